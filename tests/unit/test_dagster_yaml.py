"""The repo's dagster.yaml is what every home (dev, demo, tests) starts from."""

from __future__ import annotations

import shutil
from pathlib import Path

from dagster import DagsterInstance

from app.dagster_home import DAGSTER_YAML


def test_fresh_instance_shows_no_newsletter_modal(tmp_path: Path) -> None:
    # the modal's overlay swallowed a Launchpad click on a loaded CI machine
    shutil.copyfile(DAGSTER_YAML, tmp_path / "dagster.yaml")
    with DagsterInstance.from_config(str(tmp_path)) as instance:
        assert instance.nux_enabled is False
        assert instance.telemetry_enabled is False
