"""Small helpers shared by the benchmarks: timing, peak memory, and a printed table."""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def peak_rss_bytes() -> int:
    """This process's resident-set high-water mark (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def timed(fn: Callable[[], T]) -> tuple[float, T]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


@dataclass(frozen=True)
class Timing:
    """Wall time and CPU time of one measured step. ``cpu`` is the whole process's (the
    in-process emulators included); ``cpu_thread`` only the calling thread's - the work
    of the code under test, which a busy shared machine inflates far less than wall time."""

    wall: float
    cpu: float
    cpu_thread: float


def measured(fn: Callable[[], T]) -> tuple[Timing, T]:
    w, c, t = time.perf_counter(), time.process_time(), time.thread_time()
    result = fn()
    timing = Timing(time.perf_counter() - w, time.process_time() - c, time.thread_time() - t)
    return timing, result


def cpu_seconds() -> float:
    """User + system CPU time of this process so far, all threads included."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def commit() -> str:
    """HEAD, and how many tracked files differ from it (the tree may be shared)."""
    root = Path(__file__).resolve().parent.parent

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], capture_output=True, text=True, check=True, cwd=root
        ).stdout

    try:
        head = git("rev-parse", "--short", "HEAD").strip()
        changed = git("status", "--porcelain", "--untracked-files=no").splitlines()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{head} ({len(changed)} tracked files modified in the tree)" if changed else head


def commit_and_load() -> str:
    """The commit measured and how busy the machine was, for the figures' caption."""
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"commit {commit()}; {os.cpu_count()} CPUs; load average {load}"


def gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB"


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    cells = [[str(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    print(line)
    print("  ".join("-" * w for w in widths))
    for r in cells:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))


def positive_int(text: str) -> int:
    """An argparse ``type`` for a size (customers, rows, records, ...): a whole number of
    at least 1, else argparse's own usage error (exit 2) naming the option, instead of a
    traceback from deep inside the seeding."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return value
