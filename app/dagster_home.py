"""Every entry point (CLI, Makefile, tests) sets DAGSTER_HOME on purpose: Dagster reads the
repo's ``dagster.yaml`` only from there, and an unset DAGSTER_HOME silently gives an
ephemeral instance whose runs vanish from the UI."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from hub.settings import data_dir

REPO_ROOT = Path(__file__).resolve().parent.parent
DAGSTER_YAML = REPO_ROOT / "dagster.yaml"


def ensure_dagster_home(home: Path | None = None) -> Path:
    """Use ``$DAGSTER_HOME`` if set, else ``$HUB_DATA_DIR/dagster_home``; make sure it holds
    the repo's dagster.yaml (copied when absent, so a production home keeps its own)."""
    chosen = home or Path(os.environ.get("DAGSTER_HOME") or data_dir() / "dagster_home")
    chosen = chosen.resolve()
    chosen.mkdir(parents=True, exist_ok=True)
    target = chosen / "dagster.yaml"
    if not target.exists() and DAGSTER_YAML.exists():
        shutil.copyfile(DAGSTER_YAML, target)
    os.environ["DAGSTER_HOME"] = str(chosen)
    return chosen
