"""Dagster resources. Configuration comes from the environment (EnvVar in production, so
secrets never show in the UI); defaults point at the embedded store and the sandbox."""

from __future__ import annotations

from dagster import ConfigurableResource
from pydantic import Field
from sqlalchemy import Engine

from hub.settings import database_url, redact_url
from hub.store.db import create_store_engine


class HubStoreResource(ConfigurableResource):
    """The hub store (golden records, xref, cursors, outbox, quarantine, findings)."""

    database_url: str = Field(
        default="",
        description="SQLAlchemy URL; empty means HUB_DATABASE_URL or the SQLite file under "
        "HUB_DATA_DIR. Use EnvVar('HUB_DATABASE_URL') when it carries a password.",
    )

    def url(self) -> str:
        return self.database_url or database_url()

    def safe_url(self) -> str:
        return redact_url(self.url())

    def engine(self) -> Engine:
        return create_store_engine(self.url())
