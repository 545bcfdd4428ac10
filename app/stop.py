"""The operator's request to stop (Ctrl+C or SIGTERM on a CLI command), for the steps of the
run in progress.

Why not Dagster's own interrupt handling: in a run executed in-process, an interrupt that
lands in user code is turned into a step *retry* when the step has a retry policy (the sync
steps do), and one that lands between steps is held until the next step starts. A 14-minute
sync then ran to the end and exited 0. So the CLI runs the job in a worker thread (Dagster
leaves signals alone off the main thread), its main thread catches the signals and sets
this flag, the sync engine stops right after the batch in progress is committed, and every
step not yet started fails at once without retry.
"""

from __future__ import annotations

import threading

STOP = threading.Event()

#: what a stopped step's failure says (the CLI and the run page show it)
STOPPED = "interrupted by the operator (Ctrl+C or SIGTERM)"


def stop_requested() -> bool:
    return STOP.is_set()
