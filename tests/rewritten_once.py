"""Rewrite the test modules' asserts once, in the pytest-xdist controller, before the
workers start.

Every worker imports every test module to collect it, and pytest rewrites a test
module's asserts on import unless a valid rewritten pyc (``__pycache__/*-pytest-*.pyc``,
keyed by the source's hash) is already there. On a fresh clone none is: the 6 workers
all rewrote the same ~160 modules at the same moment (~4.6 CPU s each on the CI
machine, ~28 CPU s in all) and raced to write the same pycs. Here the controller writes
them with pytest's own rewriter and its own configuration, so the workers read exactly
what they would have written themselves. A speed-up only: anything unexpected (pytest
internals renamed, a read-only checkout) leaves the workers to rewrite as before.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest


def _files(config: pytest.Config) -> Iterator[Path]:
    from _pytest.pathlib import fnmatch_ex

    patterns = config.getini("python_files")
    base = config.invocation_params.dir
    for arg in config.args:
        path = base / arg.split("::")[0]
        if path.is_file() and path.suffix == ".py":
            yield path
        elif path.is_dir():
            for candidate in sorted(path.rglob("*.py")):
                if candidate.name == "conftest.py" or any(
                    fnmatch_ex(pattern, candidate) for pattern in patterns
                ):
                    yield candidate


def rewrite_for_workers(config: pytest.Config) -> None:
    """In the xdist controller only (a single-process run imports just what it runs)."""
    if hasattr(config, "workerinput") or sys.dont_write_bytecode:
        return
    if config.getoption("dist", "no") == "no" or not config.getoption("tx", None):
        return
    try:
        from _pytest.assertion.rewrite import (
            PYC_TAIL,
            _read_pyc,
            _rewrite_test,
            _write_pyc,
            assertstate_key,
            get_cache_dir,
            try_makedirs,
        )

        state = config.stash.get(assertstate_key, None)
        if state is None or state.hook is None:  # --assert=plain
            return
        for source in _files(config):
            cache_dir = get_cache_dir(source)
            pyc = cache_dir / (source.name[:-3] + PYC_TAIL)
            if _read_pyc(source, pyc) is not None or not try_makedirs(cache_dir):
                continue
            source_hash, code = _rewrite_test(source, config)
            _write_pyc(state, code, source_hash, pyc)
    except Exception:  # the workers rewrite what is missing
        return
