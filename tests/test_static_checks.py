"""The static checks that take long enough to matter (mypy on a fresh clone: ~30 s; the
vulnerability audit: waits on the package index) run as tests, so pytest-xdist runs them
beside the rest of the suite instead of before it: `make test` stays under its 10-minute
budget. ruff and `hub mappings check` take a second and stay in scripts/test.sh, first."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


@pytest.mark.slow
def test_mypy_is_clean() -> None:
    done = subprocess.run(
        [str(BIN / "mypy")], cwd=ROOT, capture_output=True, text=True, timeout=500
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.slow
def test_no_known_vulnerable_dependency() -> None:
    done = subprocess.run(
        ["bash", "scripts/audit.sh"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    print(done.stdout)  # "audited N of M packages", or why nothing could be audited
    assert done.returncode == 0, done.stdout + done.stderr
