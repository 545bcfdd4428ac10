"""A value computed once per test run and shared by every pytest-xdist worker.

Some tests compare against a reference landscape (a fault-free sync, an uninterrupted
one) that is the same seeded landscape and the same code in every worker. Computing it
once per run instead of once per worker or per parameter saves minutes of CPU on a
2-core machine: the first worker to ask computes it under a file lock, the others read
its pickled copy."""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable
from typing import TypeVar

import pytest
from filelock import FileLock

T = TypeVar("T")


def computed_once(
    tmp_path_factory: pytest.TempPathFactory, name: str, compute: Callable[[], T]
) -> T:
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID") or f"pid{os.getpid()}"
    shared = tmp_path_factory.getbasetemp().parent / f"{name}-{run}.pickle"
    with FileLock(f"{shared}.lock"):
        if shared.exists():
            value: T = pickle.loads(shared.read_bytes())
            return value
        value = compute()
        shared.write_bytes(pickle.dumps(value))
        return value
