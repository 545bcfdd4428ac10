"""The production wheel ships what production runs (the roof, the domain, the connectors,
the schedules and the mappings) and not the development tools (sandbox, bench, tests); its
`hub` command works without them and says what is missing where it needs the sandbox."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    uv = os.environ.get("HUB_UV_BIN") or shutil.which("uv")
    assert uv, "uv not found: run the tests through `make test` (scripts/test.sh sets HUB_UV_BIN)"
    subprocess.run(
        [uv, "build", "--wheel", "--quiet", "-o", str(out), str(ROOT)],
        check=True,
        timeout=300,
    )
    (built,) = out.glob("*.whl")
    return built


def test_wheel_holds_production_code_and_no_dev_tools(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/")[0] for name in names if not name.split("/")[0].endswith("dist-info")}
    assert tops == {"app", "hub", "connectors", "schedules", "mappings"}
    assert "mappings/sap/invoice.yaml" in names  # data the mapping loader needs
    assert "hub/analytics/rates.yaml" in names
    # generated at build time from the vendored proto (hatch_build.py), not in git
    assert "connectors/salesforce_pubsub/pubsub_api_pb2_grpc.py" in names
    assert "connectors/salesforce_pubsub/pubsub_api_pb2.py" in names
    assert any(name.startswith("hub/migrations/versions/") for name in names)


def test_hub_command_runs_from_the_wheel_alone(wheel: Path, tmp_path: Path) -> None:
    """Import from the unpacked wheel plus the installed libraries only (``-S`` skips the
    editable checkout's .pth, so nothing of the repository is on the path)."""
    unpacked = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(unpacked)
    libraries = sysconfig.get_paths()["purelib"]
    script = (
        "import sys; sys.path[:0] = [sys.argv[1], sys.argv[2]]\n"
        "from typer.testing import CliRunner\n"
        "from app.cli.main import app\n"
        "r = CliRunner().invoke(app, ['--help']); print(r.output)\n"
        "r = CliRunner().invoke(app, ['demo']); print(r.exit_code, r.output)\n"
        "import importlib.util as u\n"
        "print('sandbox importable:', u.find_spec('sandbox') is not None)\n"
    )
    done = subprocess.run(
        [sys.executable, "-S", "-c", script, str(unpacked), libraries],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "sandbox importable: False" in done.stdout
    assert " sync " in done.stdout and " reconcile " in done.stdout
    assert " sandbox " not in done.stdout
    assert "2 hub demo needs the sandbox" in done.stdout
