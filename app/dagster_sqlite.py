"""Dagster's SQLite instance storage (runs, event log, schedules: the same files, tables
and migrations), with one SQLAlchemy engine per database file instead of a new one for
every statement.

Dagster's SQLite storages call ``create_engine`` each time they connect. Every event of a
run (a 40-step sync job writes about 240) then pays for parsing the URL, setting up the
dialect and compiling its SQL again, since SQLAlchemy caches compiled statements per
engine. A 20-customer ``sync_all`` run takes 12-17% less CPU with one engine per file
(measured on a quiet machine; about a quarter on a loaded one), in every ``hub`` command,
the UI's runs and the test suite. The engines keep Dagster's ``NullPool``: each
use still opens and closes its own sqlite3 connection with Dagster's busy timeout, so
locking between the CLI, the webserver and the daemon is what Dagster's own storage does.

``dagster.yaml`` selects it through ``instance_class: HubInstance`` (the layout of Dagster's
default SQLite storage under the instance's folder, so an existing instance keeps its
history).
Production uses PostgreSQL storage (docs/dagster-production.yaml), which pools already.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import yaml
from dagster import DagsterInstance
from dagster._core.instance.ref import InstanceRef
from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage
from dagster._core.storage.runs.sqlite.sqlite_run_storage import SqliteRunStorage
from dagster._core.storage.schedules.sqlite.sqlite_schedule_storage import (
    SqliteScheduleStorage,
)
from dagster._core.storage.sqlite import SQLITE_BUSY_TIMEOUT_SECONDS
from dagster._core.storage.sqlite_storage import (
    DagsterSqliteStorage,
    _event_logs_directory,
    _runs_directory,
    _schedule_directory,
)
from dagster._serdes import ConfigurableClassData
from sqlalchemy import Connection, Engine, create_engine
from sqlalchemy.pool import NullPool

#: engines kept: the runs, schedules and event-log index databases, and the newest runs'
#: event-log shards (one file per run); an engine dropped holds no connection
MAX_ENGINES = 32


@functools.lru_cache(maxsize=MAX_ENGINES)
def cached_engine(conn_string: str) -> Engine:
    """The engine for one SQLite file, created once per process (least recently used
    dropped beyond MAX_ENGINES)."""
    return create_engine(
        conn_string, poolclass=NullPool, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS}
    )


@contextmanager
def _transaction(conn_string: str) -> Iterator[Connection]:
    with cached_engine(conn_string).connect() as conn, conn.begin():
        yield conn


class CachedEngineRunStorage(SqliteRunStorage):
    """Dagster's SQLite run storage, connecting through the cached engine."""

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        with _transaction(self._conn_string) as conn:
            yield conn


class CachedEngineScheduleStorage(SqliteScheduleStorage):
    """Dagster's SQLite schedule storage, connecting through the cached engine."""

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        with _transaction(self._conn_string) as conn:
            yield conn


class CachedEngineEventLogStorage(SqliteEventLogStorage):
    """Dagster's sharded SQLite event log (a file per run plus an index), connecting
    through the cached engine of each shard."""

    @contextmanager
    def _connect(self, shard: str) -> Iterator[Connection]:
        with self._db_lock:
            conn_string = self.conn_string_for_shard(shard)
            if shard not in self._initialized_dbs:
                self._initdb(cached_engine(conn_string))
                self._initialized_dbs.add(shard)
            with _transaction(conn_string) as conn:
                yield conn


class HubSqliteStorage(DagsterSqliteStorage):
    """Dagster's SQLite storage under ``base_dir`` built from the classes above."""

    def __init__(self, base_dir: str, inst_data: ConfigurableClassData | None = None):
        # DagsterSqliteStorage.__init__ would open Dagster's own three first: its body,
        # with these classes (DagsterStorage's __init__ still runs)
        self.base_dir = base_dir
        self._run_storage = CachedEngineRunStorage.from_local(_runs_directory(base_dir))
        self._event_log_storage = CachedEngineEventLogStorage(_event_logs_directory(base_dir))
        self._schedule_storage = CachedEngineScheduleStorage.from_local(
            _schedule_directory(base_dir)
        )
        self._inst_data = inst_data
        super(DagsterSqliteStorage, self).__init__()

    @classmethod
    def from_config_value(
        cls, inst_data: ConfigurableClassData | None, config_value: Mapping[str, Any]
    ) -> HubSqliteStorage:
        return cls.from_local(inst_data=inst_data, **config_value)


class HubInstance(DagsterInstance):
    """Dagster's instance, whose default storage (no ``storage`` key in dagster.yaml) is
    HubSqliteStorage under the instance's own folder: ``instance_class`` is Dagster's hook
    for defaults that depend on that folder, so ``DagsterInstance.from_config(folder)``
    reads that folder whatever ``$DAGSTER_HOME`` says, as with Dagster's default."""

    @classmethod
    def config_schema(cls) -> dict[str, Any]:
        return {}

    @staticmethod
    def config_defaults(base_dir: str) -> Mapping[str, ConfigurableClassData | None]:
        defaults = dict(InstanceRef.config_defaults(base_dir))
        defaults["storage"] = ConfigurableClassData(
            __name__, HubSqliteStorage.__name__, yaml.safe_dump({"base_dir": base_dir})
        )
        return defaults
