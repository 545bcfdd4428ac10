"""Where the hub keeps its state, from the environment (names fixed in ARCHITECTURE.md).

``HUB_DATA_DIR`` (default ``./data``) holds the embedded SQLite store, the sandbox's files
and the Dagster home; ``HUB_DATABASE_URL`` points the store elsewhere (e.g. PostgreSQL).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from connectors.settings import env_var, read_settings


def data_dir() -> Path:
    return Path(os.environ.get("HUB_DATA_DIR", "data")).resolve()


def database_url() -> str:
    url = os.environ.get("HUB_DATABASE_URL")
    if url:
        return url
    path = data_dir() / "hub.sqlite"
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def sandbox_env_file() -> Path:
    """Where ``hub sandbox up --data-dir $HUB_DATA_DIR/sandbox`` writes its environment."""
    return Path(os.environ.get("HUB_SANDBOX_DIR", data_dir() / "sandbox")) / "sandbox.env"


def read_env_file(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    if not path.exists():
        return values
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            values[key.strip()] = value.strip()
    return values


def connection_env() -> dict[str, str]:
    """Connector settings: the process environment wins; anything it lacks comes from the
    running sandbox's sandbox.env, so the defaults point at the sandbox."""
    return {**read_env_file(sandbox_env_file()), **os.environ}


# -- the change-event listener (``hub listen``) ----------------------------------------------
def _port(raw: str) -> int | None:
    raw = raw.strip()
    if not raw:
        return None
    if not raw.isdigit() or not 0 <= int(raw) <= 65535:
        raise ValueError(f"HUB_EVENTS_PORT={raw!r}: give a TCP port from 0 to 65535")
    return int(raw)


def _batch(raw: str) -> int | None:
    raw = raw.strip()
    if not raw:
        return None
    if not raw.isdigit() or not 1 <= int(raw) <= 10_000:
        raise ValueError(f"HUB_EVENTS_BATCH={raw!r}: give a whole number of events, 1 to 10000")
    return int(raw)


@dataclass
class EventSettings:
    """How ``hub listen`` serves the SAP business event webhook and applies the inbox.
    The webhook needs ``HUB_EVENTS_SECRET`` or ``HUB_EVENTS_USER``/``HUB_EVENTS_PASSWORD``
    (it never runs open); secrets are never printed."""

    host: str = field(
        default="127.0.0.1",
        metadata=env_var("HUB_EVENTS_HOST", doc="address the SAP event webhook binds to"),
    )
    port: int = field(
        default=8787,
        metadata=env_var("HUB_EVENTS_PORT", parse=_port, doc="port of the SAP event webhook"),
    )
    secret: str = field(
        default="",
        repr=False,
        metadata=env_var(
            "HUB_EVENTS_SECRET", secret=True, doc="shared secret SAP sends in X-Hub-Event-Secret"
        ),
    )
    user: str = field(
        default="", metadata=env_var("HUB_EVENTS_USER", doc="basic-auth user of the webhook")
    )
    password: str = field(
        default="",
        repr=False,
        metadata=env_var(
            "HUB_EVENTS_PASSWORD", secret=True, doc="basic-auth password of the webhook"
        ),
    )
    batch: int = field(
        default=500,
        metadata=env_var("HUB_EVENTS_BATCH", parse=_batch, doc="inbox rows applied per pass"),
    )

    @property
    def has_credentials(self) -> bool:
        return bool(self.secret or (self.user and self.password))


def event_settings(env: Mapping[str, str] | None = None) -> EventSettings:
    """``hub listen``'s settings from ``env`` (default: the process environment)."""
    return read_settings(EventSettings, os.environ if env is None else env)
