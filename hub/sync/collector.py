"""The cyclic garbage collector during a bulk pass of the sync (issue 18).

Why: an initial load allocates millions of short-lived containers (mapped records, store
rows, merge results). Whenever enough of them outlive a young collection, CPython's full
collection walks every container in the process - Dagster's definitions, every module,
an embedded sandbox's whole landscape - looking for cycles among objects that were alive
before the pass began and will be alive after it. At 10,000 customers one benchmark run
spent 33.6 CPU s in 267 of them (docs/sync.md, "The cyclic collector during a pass").

:func:`collector_spared` freezes what exists when the outermost pass starts
(``gc.freeze``: those objects are no longer walked; reference counting still frees them)
and unfreezes it when that pass ends, so a garbage cycle among them is collected as
before, only later (by the next walk of the whole heap, see collector_spared). What the
pass itself allocates is still collected, with a young generation of
:data:`YOUNG_THRESHOLD` objects instead of CPython's 700: most of a pass's objects die
with their batch, freed by reference counting before a young collection looks at them,
and fewer of them are carried into the older generations.
Passes nested in one another, or running beside each other in threads, share one
setting: the last to end restores the collector as it was.

Measured (collector CPU in the initial load, counted with ``gc.callbacks``): 2,000
customers, 3.9 s with the freeze alone and 2.0 s with a young generation of 20,000 too;
10,000 customers, 10.8 s with 20,000 (5.7 s of it young collections, 3.5 s the middle
generation's) and 6.5 s with 100,000 (4.5 s and 0.3 s), peak memory 0.58-0.59 GiB
either way (emulators included): a batch's rows outlive a young generation of 20,000
and were walked again in the middle generation."""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

#: objects allocated (net) between young collections during a pass
YOUNG_THRESHOLD = 100_000
#: a pass that lasted this long ends with a collection of what it allocated
COLLECT_AFTER_SECONDS = 1.0
#: at most this often, a pass's end also collects the whole heap (see collector_spared)
WHOLE_HEAP_EVERY_SECONDS = 60.0

_lock = threading.Lock()
_active = 0
_saved: tuple[int, int, int] = gc.get_threshold()
_started = 0.0
_whole_heap_at = time.monotonic()


@contextmanager
def collector_spared() -> Iterator[None]:
    """Run the body with the objects that exist now kept out of the cyclic collector's
    walks (see the module's docstring).

    The outermost pass, if it lasted COLLECT_AFTER_SECONDS or more, ends with a
    collection made while its freeze still holds: it walks only what the pass allocated
    and still holds, and frees the pass's garbage cycles (its batches' sessions and
    rows), which the next pass would otherwise freeze again - a run of passes back to
    back then held all of them to its end (peak memory at 10,000 customers 0.66 ->
    0.91 GiB). A cycle among objects older than the pass, dropped during it, needs a walk
    of the whole heap (an embedded sandbox's landscape included): the pass's end pays
    one at most every WHOLE_HEAP_EVERY_SECONDS, not after every pass. A shorter pass
    leaves everything to the collector's own schedule."""
    global _active, _saved, _started
    with _lock:
        if _active == 0:
            _started = time.monotonic()
            gc.freeze()
            _saved = gc.get_threshold()
            gc.set_threshold(max(_saved[0], YOUNG_THRESHOLD), *_saved[1:])
        _active += 1
    try:
        yield
    finally:
        with _lock:
            _active -= 1
            if _active == 0:
                _end_pass(time.monotonic())


def _end_pass(now: float) -> None:
    """Restore the collector as the outermost pass found it (called under _lock)."""
    global _whole_heap_at
    long_pass = now - _started >= COLLECT_AFTER_SECONDS
    if long_pass:
        gc.collect()  # frozen still: the pass's own objects only
    gc.set_threshold(*_saved)
    gc.unfreeze()
    if long_pass and now - _whole_heap_at >= WHOLE_HEAP_EVERY_SECONDS:
        gc.collect()
        _whole_heap_at = time.monotonic()
