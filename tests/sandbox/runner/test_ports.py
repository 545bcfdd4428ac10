"""How emulators get their ports: CI once lost a sandbox start because a port chosen with
bind(0) was an ephemeral one, and an outgoing connection took it before uvicorn bound it."""

from __future__ import annotations

import socket
from pathlib import Path

from typer.testing import CliRunner

from app.cli.main import app
from sandbox.runner import running_sandbox
from sandbox.server import _ephemeral_range, free_port, listening_socket


def test_free_port_is_below_the_ephemeral_range() -> None:
    low, _ = _ephemeral_range()
    ports = {free_port() for _ in range(50)}
    assert all(port < low for port in ports), sorted(ports)
    assert len(ports) > 1  # chosen at random, not one fixed port


def test_listening_socket_accepts_connections_before_any_server_runs() -> None:
    with listening_socket() as sock:
        port = sock.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            pass  # the kernel queues it: the port is ours from the moment it is chosen
        # and nobody else can bind it meanwhile
        with socket.socket() as other:
            try:
                other.bind(("127.0.0.1", port))
            except OSError:
                pass
            else:
                raise AssertionError(f"port {port} could be bound twice")


def test_every_emulator_serves_on_a_port_outside_the_ephemeral_range(tmp_path: Path) -> None:
    low, _ = _ephemeral_range()
    with running_sandbox(tmp_path / "sb", seed=3, customers=5) as sandbox:
        ports = {system: int(url.rsplit(":", 1)[1]) for system, url in sandbox.urls.items()}
    assert ports and all(port < low for port in ports.values()), ports


def test_a_taken_port_fails_the_start_naming_the_system_and_port(tmp_path: Path) -> None:
    with listening_socket() as taken:
        port = taken.getsockname()[1]
        result = CliRunner().invoke(
            app,
            [
                "sandbox",
                "up",
                "--data-dir",
                str(tmp_path / "sb"),
                "--customers",
                "5",
                "--sap-port",
                str(port),
            ],
        )
    assert result.exit_code == 1, result.output
    assert f"sap emulator: cannot listen on 127.0.0.1:{port}" in result.output
    assert not (tmp_path / "sb" / "sandbox.env").exists()
