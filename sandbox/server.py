"""Run an emulator's ASGI app on loopback: in a background thread (tests) or as one of
several servers sharing an event loop (``hub sandbox up``)."""

from __future__ import annotations

import logging
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn

LOOPBACK = "127.0.0.1"


def free_port(host: str = LOOPBACK) -> int:
    """A port the OS says is free now (the usual bind-to-0 trick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class TLSFiles:
    """Server certificate and key (PEM) signed by the sandbox CA, plus the CA bundle."""

    certfile: Path
    keyfile: Path
    ca_bundle: Path


class _QuietGracefulShutdown(logging.Filter):
    """Idle keep-alive clients outliving the short graceful-shutdown window are expected
    when a sandbox stops; uvicorn reports them at ERROR, which would alarm every user."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "timeout graceful shutdown exceeded" not in record.getMessage()


logging.getLogger("uvicorn.error").addFilter(_QuietGracefulShutdown())


def uvicorn_config(
    app: Any, port: int, tls: TLSFiles | None = None, host: str = LOOPBACK
) -> uvicorn.Config:
    """One place that decides how emulators are served (loopback only, quiet logs)."""
    if host not in (LOOPBACK, "localhost", "::1"):
        raise ValueError(f"the sandbox binds to loopback only, not {host!r}")
    kwargs: dict[str, Any] = {}
    if tls is not None:
        kwargs = {
            "ssl_certfile": str(tls.certfile),
            "ssl_keyfile": str(tls.keyfile),
            "ssl_version": ssl.PROTOCOL_TLS_SERVER,
        }
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        lifespan="off",
        timeout_keep_alive=30,
        # clients holding idle keep-alive connections must not stall a shutdown
        timeout_graceful_shutdown=2,
        **kwargs,
    )


@contextmanager
def serve_in_thread(app: Any, tls: TLSFiles | None = None, port: int = 0) -> Iterator[str]:
    """Serve ``app`` on loopback in a daemon thread; yields its base URL (no trailing /)."""
    port = port or free_port()
    server = uvicorn.Server(uvicorn_config(app, port, tls))
    thread = threading.Thread(target=server.run, name=f"emulator:{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"emulator on port {port} did not start")
        time.sleep(0.02)
    scheme = "https" if tls else "http"
    try:
        yield f"{scheme}://{LOOPBACK}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
