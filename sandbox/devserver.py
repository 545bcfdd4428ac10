"""Start the Dagster UI (webserver + daemon) on loopback in its own process group, for the
end-to-end tests and the demo; always torn down as a group so no daemon is left behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import httpx

from sandbox.server import LOOPBACK, free_port

REPO_ROOT = Path(__file__).resolve().parent.parent


@contextmanager
def dagster_dev(
    dagster_home: Path,
    env: dict[str, str] | None = None,
    port: int = 0,
    timeout: float = 120,
    command: list[str] | None = None,
) -> Iterator[str]:
    """``dagster dev`` from the repo root (or ``command``, which must serve the UI on
    ``$HUB_UI_PORT``, e.g. ``make dev``); yields the UI's base URL once it answers."""
    port = port or free_port()
    dagster_home.mkdir(parents=True, exist_ok=True)
    yaml_path = dagster_home / "dagster.yaml"
    if not yaml_path.exists():
        yaml_path.write_text((REPO_ROOT / "dagster.yaml").read_text())
    log_path = dagster_home / "dagster-dev.log"
    bin_dir = Path(sys.executable).parent
    full_env = {**os.environ, **(env or {}), "DAGSTER_HOME": str(dagster_home)}
    full_env["PATH"] = f"{bin_dir}{os.pathsep}{full_env.get('PATH', '')}"
    full_env["HUB_UI_PORT"] = str(port)
    argv = command or [str(bin_dir / "dagster"), "dev", "-h", LOOPBACK, "-p", str(port)]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            argv,
            cwd=REPO_ROOT,
            env=full_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://{LOOPBACK}:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{argv[0]} exited: {log_path.read_text()[-3000:]}")
            try:
                if httpx.get(f"{url}/server_info", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"dagster dev not up after {timeout}s: {log_path.read_text()[-3000:]}"
                )
            time.sleep(0.5)
        yield url
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            with suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
