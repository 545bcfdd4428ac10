"""Run an emulator's ASGI app on loopback: in a background thread (tests) or as one of
several servers sharing an event loop (``hub sandbox up``)."""

from __future__ import annotations

import logging
import random
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import uvicorn

LOOPBACK = "127.0.0.1"


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


# Ports handed out by free_port() come from below the kernel's ephemeral range: a port
# from bind(0) is an ephemeral one, and between our closing it and a server (often
# another process: postgres, dagster dev) binding it, any outgoing connection on the
# machine may take it as its source port. CI lost a sandbox start to exactly that.
_PORT_FLOOR = 20000


def free_port(host: str = LOOPBACK) -> int:
    """A port that is free now and outside the ephemeral range, for a server started by
    another process. In-process servers should use :func:`listening_socket`, which keeps
    the port bound from the moment it is chosen."""
    low, _ = _ephemeral_range()
    if low - _PORT_FLOOR >= 1000:
        rng = random.SystemRandom()
        for _ in range(50):
            port = rng.randrange(_PORT_FLOOR, low)
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                try:
                    sock.bind((host, port))
                except OSError:
                    continue
                return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def listening_socket(port: int = 0, host: str = LOOPBACK) -> socket.socket:
    """A socket bound and listening on ``host:port`` (``port`` 0: one from free_port's
    range), handed to uvicorn as is, so no other process can take the port between
    choosing it and serving on it."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        for attempt in range(20):
            try:
                sock.bind((host, port or free_port(host)))
                break
            except OSError:
                if port or attempt == 19:
                    raise
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        where = f"{host}:{port or 'a free port'}"
        raise OSError(exc.errno, f"cannot listen on {where}: {exc.strerror}") from exc
    return sock


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
        # clients holding idle keep-alive connections must not stall a shutdown: an idle TLS
        # connection waits for the client's close_notify, which never comes (with 2 s here,
        # every teardown of a sandbox a connector had talked to took 2.2 s; now 0.5 s)
        # (typed int, used as asyncio.wait_for's timeout: a float is what it takes)
        timeout_graceful_shutdown=cast(int, 0.3),
        **kwargs,
    )


@contextmanager
def serve_in_thread(app: Any, tls: TLSFiles | None = None, port: int = 0) -> Iterator[str]:
    """Serve ``app`` on loopback in a daemon thread; yields its base URL (no trailing /)."""
    sock = listening_socket(port)
    port = int(sock.getsockname()[1])
    server = uvicorn.Server(uvicorn_config(app, port, tls))
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name=f"emulator:{port}", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + 15
    try:
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"emulator on port {port} did not start")
            time.sleep(0.02)
        scheme = "https" if tls else "http"
        yield f"{scheme}://{LOOPBACK}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
