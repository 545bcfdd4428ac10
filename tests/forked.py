"""Child processes forked from one that imported the project once (a fork server).

The crash tests SIGKILL a sync, a reconciliation or `hub listen` running in its own
process, dozens of times per run. Started with ``python -m``, each of those processes spent
~1.3 s of CPU importing the project (SQLAlchemy, pyarrow, DuckDB, gRPC...) before doing any
work: most of what the tests cost. Here they are forked from multiprocessing's fork server,
a fresh interpreter that imported :data:`PRELOAD` once (per test process) and runs nothing
else - no threads, no connections, no open stores - so every child starts as a fresh
process would after its imports, then parses its arguments and runs the same ``main`` the
command line runs. It is still a process of its own, killed with SIGKILL as before.
"""

from __future__ import annotations

import atexit
import contextlib
import io
import multiprocessing
import multiprocessing.forkserver
import os
import signal
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

#: imported once by the fork server; a module missing here still works, imported by each
#: child (slower). ``__main__``: a script's main module (the ``pytest`` script), which each
#: child would otherwise run again as ``__mp_main__``.
PRELOAD = [
    "__main__",
    "tests.e2e.sync_child",
    "tests.e2e.recon_child",
    "hub.store.migrate",
    "app.cli.main",
    "app.listener",
]

#: children not yet waited for (killed as the fork server stops)
_RUNNING: set[Forked] = set()
_CONTEXT = multiprocessing.get_context("forkserver")
_CONTEXT.set_forkserver_preload(PRELOAD)


@atexit.register
def _stop_server() -> None:
    """Stop the fork server and wait for it as the process exits. Without this it exits
    on its own, reaped by no one, and the CPU of every child it forked (which it reaps)
    would be missing from this process's children's CPU time, where the tests' cost is
    measured."""
    for child in list(_RUNNING):  # the server waits for every child it forked
        child.kill()
        with contextlib.suppress(Exception):
            child.wait(30)
    with contextlib.suppress(Exception):
        multiprocessing.forkserver._forkserver._stop()  # type: ignore[attr-defined]


class Forked:
    """A forked child, with the parts of :class:`subprocess.Popen` the tests use."""

    def __init__(self, process: Any, stdout: io.TextIOWrapper | None) -> None:
        self._process = process
        self.pid: int = process.pid
        self.stdout = stdout

    def poll(self) -> int | None:
        code: int | None = self._process.exitcode
        return code

    def wait(self, timeout: float | None = None) -> int:
        self._process.join(timeout)
        code = self._process.exitcode
        if code is None:
            raise TimeoutError(f"child {self.pid} still running after {timeout} s")
        _RUNNING.discard(self)
        if self.stdout is not None:
            self.stdout.close()
        return int(code)

    def send_signal(self, signum: int) -> None:
        if self._process.exitcode is None:
            os.kill(self.pid, signum)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


def _run(
    target: str,
    argv: Sequence[str],
    env: Mapping[str, str] | None,
    cwd: str | None,
    output: Connection | str | None,
    new_session: bool,
) -> None:
    """In the child: the process environment, standard output, then ``target``'s
    ``module:function`` called with ``sys.argv`` set to ``argv``."""
    if new_session:
        os.setsid()
    if env is not None:
        os.environ.clear()
        os.environ.update(env)
    if cwd is not None:
        os.chdir(cwd)
    if isinstance(output, str):  # a log file (created by the parent): output and errors
        fd = os.open(output, os.O_WRONLY | os.O_APPEND)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
    elif output is not None:  # a pipe the parent reads: standard output only
        os.dup2(output.fileno(), 1)
        output.close()
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)
    sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115 - lives as long as the child
    sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
    module, _, function = target.partition(":")
    sys.argv = [module, *argv]
    main: Callable[[], Any] = getattr(__import__(module, fromlist=[function]), function)
    code = None
    with contextlib.suppress(BrokenPipeError):  # the parent stopped reading: it kills us
        code = main()
        sys.stdout.flush()
    sys.exit(code)


def start(
    target: str,
    argv: Sequence[str] = (),
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | str | None = None,
    log: Path | None = None,
    new_session: bool = False,
) -> Forked:
    """Fork a child running ``target`` (``"package.module:function"``) with ``argv``.
    Its standard output is the returned object's ``stdout`` (a text stream, line by line),
    or, with ``log``, that file (standard error too)."""
    reader: Connection | None = None
    output: Connection | str | None
    if log is not None:
        log.write_bytes(b"")  # there when this returns, as with a shell's redirection
        output = str(log)
    else:
        reader, output = _CONTEXT.Pipe(duplex=False)
    process = _CONTEXT.Process(
        target=_run,
        args=(target, list(argv), dict(env) if env is not None else None, cwd, output, new_session),
        daemon=False,
    )
    process.start()
    stdout = None
    if reader is not None:
        assert isinstance(output, Connection)
        output.close()  # the child holds the write end: end of file when it exits
        stdout = open(os.dup(reader.fileno()), encoding="utf-8")  # noqa: SIM115 - closed by wait
        reader.close()
    child = Forked(process, stdout)
    _RUNNING.add(child)
    return child


@contextlib.contextmanager
def started(target: str, argv: Sequence[str] = (), **kwargs: Any) -> Iterator[Forked]:
    """:func:`start`, the child killed if still running on exit."""
    child = start(target, argv, **kwargs)
    try:
        yield child
    finally:
        child.kill()
        child.wait(30)
