"""`hub sandbox up/down/fault` as real processes, and the in-process running_sandbox()."""

from __future__ import annotations

import importlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from app.cli.main import app
from connectors import billing_schema as S
from hub.settings import read_env_file
from sandbox.runner import EMULATORS, SandboxError, parse_fault, running_sandbox

FIXED_NAMES = {
    "salesforce": (
        "SALESFORCE_LOGIN_URL",
        "SALESFORCE_CLIENT_ID",
        "SALESFORCE_CLIENT_SECRET",
        "SALESFORCE_USERNAME",
        "SALESFORCE_PRIVATE_KEY_FILE",
        "SALESFORCE_API_VERSION",
        "HUB_CA_BUNDLE",
    ),
    "sap": ("SAP_ODATA_URL", "SAP_USER", "SAP_PASSWORD", "SAP_CLIENT"),
    "pim": ("PIM_URL", "PIM_CLIENT_ID", "PIM_SECRET", "PIM_USERNAME", "PIM_PASSWORD"),
    "wms": ("WMS_URL", "WMS_API_KEY"),
}


def _ready_emulators() -> list[str]:
    """Emulators whose package is importable with create_app (others are skipped by the
    runner with a warning while they are being written)."""
    ready = []
    for spec in EMULATORS:
        try:
            module = importlib.import_module(spec.module)
        except ImportError:
            continue
        if hasattr(module, "create_app") and hasattr(module, spec.settings_class):
            ready.append(spec.system)
    return ready


def test_parse_fault() -> None:
    system, spec = parse_fault("sap=429:rate=0.5,retry_after=2,count=3")
    assert system == "sap"
    assert (spec.mode, spec.rate, spec.retry_after, spec.count) == ("429", 0.5, 2, 3)
    assert parse_fault("wms=latency:latency-ms=200")[1].latency_ms == 200
    for bad in ("nosuch=429", "sap", "sap=429:rate", "sap=teapot", "sap=429:rate=7"):
        with pytest.raises(SandboxError):
            parse_fault(bad)


def _wait_for(path: Path, proc: subprocess.Popen[bytes], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            out = proc.stdout.read().decode() if proc.stdout else ""
            raise AssertionError(f"sandbox exited early ({proc.returncode}):\n{out}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} not written within {timeout} s")
        time.sleep(0.1)


def _hub(*args: str) -> list[str]:
    return [sys.executable, "-m", "app.cli.main", *args]


def _start(data_dir: Path, *extra: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        _hub("sandbox", "up", "--data-dir", str(data_dir), "--customers", "30", *extra),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )


def _check_answering(env: dict[str, str], systems: list[str]) -> None:
    verify = env.get("HUB_CA_BUNDLE") or True
    with httpx.Client(verify=verify, timeout=10) as client:
        for system in systems:
            url = env[f"SANDBOX_{system.upper()}_ADMIN_URL"]
            assert client.get(f"{url}/health").json() == {"status": "ok"}


@pytest.mark.slow
def test_up_writes_env_survives_restart_and_down_stops_it(tmp_path: Path) -> None:
    data_dir = tmp_path / "sandbox"
    env_file = data_dir / "sandbox.env"
    systems = _ready_emulators()
    proc = _start(data_dir)
    try:
        _wait_for(env_file, proc)
        env = read_env_file(env_file)
        assert oct(env_file.stat().st_mode & 0o777) == "0o600"
        assert env["BILLING_DATABASE_URL"].startswith("sqlite:///")
        for system in systems:
            missing = [name for name in FIXED_NAMES[system] if not env.get(name)]
            assert not missing, f"{system}: {missing}"
            assert env[f"SANDBOX_{system.upper()}_ADMIN_URL"].startswith(
                ("http://127.0.0.1:", "https://127.0.0.1:")
            )
        _check_answering(env, systems)
        pid = int((data_dir / "sandbox.pid").read_text())
        assert pid == proc.pid
        seeded = (data_dir / "seed.json").read_text()
        manifest = json.loads((data_dir / "manifest.json").read_text())
        assert {e["kind"] for e in manifest} >= {"aggregate", "mismatch"}

        # a change made while running must survive the restart (no reseed)
        engine = sa.create_engine(env["BILLING_DATABASE_URL"])
        with engine.begin() as conn:
            conn.execute(
                sa.update(S.accounts)
                .where(S.accounts.c.hub_id == "CUS-0000003")
                .values(legal_name="Renamed While Running Ltd")
            )
        engine.dispose()

        down = subprocess.run(
            _hub("sandbox", "down", "--data-dir", str(data_dir)),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert down.returncode == 0, down.stderr
        assert f"pid {pid}" in down.stdout
        assert proc.wait(timeout=30) == 0
        out = proc.stdout.read().decode() if proc.stdout else ""
        assert "sandbox ready" in out and "sandbox stopped" in out
        for secret_name in ("PASSWORD", "SECRET", "API_KEY"):
            for key, value in env.items():
                if secret_name in key and len(value) > 3:
                    assert value not in out, f"{key} printed"
        assert not env_file.exists() and not (data_dir / "sandbox.pid").exists()

        # restart: same state, not reseeded, every emulator answering again
        proc = _start(data_dir, "--seed", "99")
        _wait_for(env_file, proc)
        env = read_env_file(env_file)
        _check_answering(env, systems)
        assert (data_dir / "seed.json").read_text() == seeded
        engine = sa.create_engine(env["BILLING_DATABASE_URL"])
        with engine.connect() as conn:
            name = conn.execute(
                sa.select(S.accounts.c.legal_name).where(S.accounts.c.hub_id == "CUS-0000003")
            ).scalar_one()
        engine.dispose()
        assert name == "Renamed While Running Ltd"
        proc.send_signal(signal.SIGINT)  # Ctrl+C shuts down cleanly too
        assert proc.wait(timeout=30) == 0
        assert not env_file.exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_down_without_a_running_sandbox(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["sandbox", "down", "--data-dir", str(tmp_path)])
    assert result.exit_code == 0
    assert "no sandbox running" in result.output


@pytest.mark.slow
def test_running_sandbox_and_fault_command(tmp_path: Path) -> None:
    systems = _ready_emulators()
    with running_sandbox(tmp_path / "sb", seed=3, customers=20) as sandbox:
        assert sandbox.env["BILLING_DATABASE_URL"] == sandbox.billing_url
        assert (tmp_path / "sb" / "sandbox.env").exists()
        assert not (tmp_path / "sb" / "sandbox.pid").exists()  # in-process: nothing to kill
        assert sandbox.manifest()
        _check_answering(sandbox.env, systems)
        runner = CliRunner()
        for system in systems:
            args = ["sandbox", "fault", system, "503", "--count", "1", "--retry-after", "7"]
            result = runner.invoke(app, [*args, "--data-dir", str(tmp_path / "sb")])
            assert result.exit_code == 0, result.output
            active = json.loads(result.output)["faults"]
            assert active[0]["mode"] == "503" and active[0]["retry_after"] == 7
            verify = sandbox.env.get("HUB_CA_BUNDLE") or True
            with httpx.Client(verify=verify) as client:
                hit = client.get(f"{sandbox.urls[system]}/anything")
                assert hit.status_code == 503 and hit.headers["retry-after"] == "7"
            result = runner.invoke(
                app, ["sandbox", "fault", system, "clear", "--data-dir", str(tmp_path / "sb")]
            )
            assert json.loads(result.output)["faults"] == []
    assert not (tmp_path / "sb" / "sandbox.env").exists()


def _outward_address() -> str | None:
    """This machine's address on its first non-loopback interface (no packet is sent)."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("10.255.255.255", 9))
        except OSError:
            return None
        address: str = probe.getsockname()[0]
    return None if address.startswith("127.") else address


def test_emulators_listen_on_loopback_only(tmp_path: Path) -> None:
    """Sandbox credentials are throwaway, but the emulators accept them: nothing outside
    this machine may reach them."""
    import socket
    from urllib.parse import urlsplit

    outward = _outward_address()
    assert outward, "this machine has no non-loopback IPv4 address to test against"
    with running_sandbox(tmp_path / "sb", seed=3, customers=5) as sandbox:
        for system, url in sandbox.urls.items():
            parts = urlsplit(url)
            assert parts.hostname == "127.0.0.1", f"{system} listens on {parts.hostname}"
            with socket.socket() as sock:
                sock.settimeout(2)
                assert sock.connect_ex((outward, parts.port or 0)) != 0, (
                    f"{system} answers on {outward}:{parts.port}"
                )


def test_every_emulator_counts_its_api_calls(tmp_path: Path) -> None:
    with running_sandbox(tmp_path / "sb", seed=3, customers=5) as sandbox:
        sandbox.reset_calls()
        verify = sandbox.env.get("HUB_CA_BUNDLE") or True
        with httpx.Client(verify=verify) as client:
            for system, url in sandbox.urls.items():
                client.get(f"{url}/anything")
                client.post(f"{url}/anything", content=b"{}")
                client.get(f"{url}/__sandbox/health")  # admin calls are not API calls
                over_http = client.get(f"{url}/__sandbox/calls").json()
                assert over_http == sandbox.calls()[system]
                assert over_http["calls"] == 2 and over_http["writes"] == 1, system
                client.delete(f"{url}/__sandbox/calls")
                assert sandbox.calls()[system]["calls"] == 0
