"""Where the hub keeps its state, from the environment (names fixed in ARCHITECTURE.md).

``HUB_DATA_DIR`` (default ``./data``) holds the embedded SQLite store, the sandbox's files
and the Dagster home; ``HUB_DATABASE_URL`` points the store elsewhere (e.g. PostgreSQL).
"""

from __future__ import annotations

import os
from pathlib import Path


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
