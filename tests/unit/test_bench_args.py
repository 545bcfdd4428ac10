"""A benchmark given a size that is not a whole number of at least 1 stops with
argparse's usage error (exit 2) naming the option: `python -m bench.sync --customers -5`
ended in a ValueError traceback from the seeding."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from bench._common import positive_int


@pytest.mark.parametrize("text", ["0", "-5", "x", "1.5", ""])
def test_a_size_below_one_or_not_a_number_is_refused(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="not a whole number of at least 1"):
        positive_int(text)
    assert positive_int("1") == 1 and positive_int("10000") == 10_000


def test_the_sync_benchmark_names_the_option_without_a_traceback() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.sync", "--customers", "-5"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert "argument --customers: '-5' is not a whole number of at least 1" in done.stderr
    assert "Traceback" not in done.stderr
