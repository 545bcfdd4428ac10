"""Engine and session set-up for the hub store, identical for SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import orjson
from sqlalchemy import Boolean, Engine, Text, bindparam, create_engine, event
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import QueryableAttribute, Session, sessionmaker
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import BindParameter, ColumnElement
from sqlalchemy.sql.type_api import TypeDecorator
from sqlalchemy.sql.visitors import InternalTraversal

from hub.settings import database_url


def _json_dumps(value: Any) -> str:
    """The JSON columns' text (golden records, payloads), by orjson: an initial load
    writes every record it reads, and the standard library's encoder cost several times
    more. Whatever orjson refuses (an integer beyond 64 bits) takes the standard path,
    which also raises for what JSON cannot hold (a datetime), as before."""
    try:
        return orjson.dumps(value, option=_JSON_OPTIONS).decode()
    except orjson.JSONEncodeError:
        return json.dumps(value)


_JSON_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME


def json_loads(value: Any) -> Any:
    """orjson's reading of a JSON column; the standard library's for the rest (SQLite
    hands a number stored in a JSON column back as a number, and SQLAlchemy expects the
    TypeError json.loads raises for it; NaN, which orjson does not read)."""
    if isinstance(value, str | bytes):
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError:
            pass
    return json.loads(value)


#: WAL pages written before a commit copies them into the database file (SQLite's default
#: is 1,000, 4 MB). A bulk load commits a batch at a time; each checkpoint copies every page
#: the WAL holds and syncs the file, and the same index pages come back in batch after
#: batch. 16,000 pages (64 MB of WAL at most) copy each of them once per 16 times as many
#: commits. A 10,000-customer initial load's 605 commits cost 6.8 s of CPU instead of 9.6 s,
#: and the load 287 s wall instead of 305 s (docs/sync.md, session 20). While a sync runs,
#: a thread of its own copies the WAL sooner (hub.store.checkpoints), and this bound is
#: the backstop for a log that outgrows it.
WAL_CHECKPOINT_PAGES = 16_000


def create_store_engine(url: str | None = None, **kwargs: Any) -> Engine:
    """An engine for the hub store. SQLite gets WAL, a busy timeout and enforced foreign
    keys so it behaves like a server database under Dagster's concurrent steps."""
    url = url or database_url()
    kwargs.setdefault("json_serializer", _json_dumps)
    kwargs.setdefault("json_deserializer", json_loads)
    if url.startswith("sqlite"):
        kwargs.setdefault("connect_args", {"timeout": 30})
        engine = create_engine(url, **kwargs)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute(f"PRAGMA wal_autocheckpoint={WAL_CHECKPOINT_PAGES}")
            cur.close()

        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(url, **kwargs)


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


#: What a driver says when the store has no schema (SQLite; PostgreSQL's UndefinedTable)
_NO_SCHEMA = (
    "no such table",
    "no such column",
    "undefinedtable",
    "undefinedcolumn",
    "does not exist",
)
#: What a driver says when the store cannot be reached at all
_UNREACHABLE = (
    "connection refused",
    "could not connect",
    "could not translate host name",
    "connection to server",
    "unable to open database file",
    "timeout expired",
    "name or service not known",
)


def store_problem(exc: BaseException, url: str | None = None) -> str | None:
    """One line naming the cause and the fix when ``exc`` says the hub store itself is
    unusable (no schema, unreachable), else ``None``. Such errors are configuration, not
    load: retrying a step cannot fix them, and the run should say so at the top instead
    of three levels down in an event log. The URL is shown with its password masked."""
    from sqlalchemy.exc import DBAPIError, OperationalError, ProgrammingError

    from connectors.redact import redact_url

    if not isinstance(exc, DBAPIError | OperationalError | ProgrammingError):
        return None
    where = redact_url(url or database_url())
    text = str(getattr(exc, "orig", None) or exc).strip()
    lowered = f"{type(getattr(exc, 'orig', exc)).__name__} {text}".lower()
    first = text.splitlines()[0] if text else type(exc).__name__
    if any(marker in lowered for marker in _NO_SCHEMA):
        return f"hub store at {where} has no schema or an old one ({first}): run `hub db upgrade`"
    if any(marker in lowered for marker in _UNREACHABLE):
        return (
            f"hub store unreachable at {where} ({first}): is the database running, and is "
            "HUB_DATABASE_URL right?"
        )
    return None


def store_url_problem(exc: BaseException, url: str | None = None) -> str | None:
    """One line naming the URL and examples when ``exc`` says ``url`` (the hub store's)
    is not a database URL at all (no such dialect, not a URL), else ``None``. Only for
    callers that know the URL was the hub store's: a step also builds other systems'
    engines (billing), whose bad URL must not be blamed on the hub store."""
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    from connectors.redact import redact_url

    if not isinstance(exc, NoSuchModuleError) and not (
        isinstance(exc, ArgumentError) and "Could not parse SQLAlchemy URL" in str(exc)
    ):
        return None
    return (
        f"hub store URL {redact_url(url or database_url())!r} is not one the hub can use "
        f"({exc}): set HUB_DATABASE_URL (or --url) to e.g. sqlite:///data/hub.sqlite or "
        "postgresql+psycopg2://user:password@host:5432/hub"
    )


class _KeyList(TypeDecorator[list[Any]]):
    """A list of keys bound as ONE parameter: a JSON array on SQLite (read back by
    ``json_each``), the list itself on PostgreSQL (the driver sends it as an array)."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        keys = list(value)
        return keys if dialect.name == "postgresql" else orjson.dumps(keys).decode()


class _OneOf(ColumnElement[bool]):
    """``column`` is one of a list of keys; see :func:`one_of`."""

    type = Boolean()
    inherit_cache = True
    _traverse_internals = [
        ("column", InternalTraversal.dp_clauseelement),
        ("keys", InternalTraversal.dp_clauseelement),
    ]

    def __init__(self, column: ColumnElement[Any], keys: BindParameter[Any]) -> None:
        self.column, self.keys = column, keys

    def self_group(self, against: Any = None) -> ColumnElement[Any]:
        """A predicate as it is, like a comparison (a boolean column would be rendered
        ``... = 1`` on SQLite, which hides the index from the planner)."""
        return self


@compiles(_OneOf, "postgresql")
def _one_of_postgresql(element: _OneOf, compiler: SQLCompiler, **kw: Any) -> str:
    return f"{compiler.process(element.column, **kw)} = ANY({compiler.process(element.keys, **kw)})"


@compiles(_OneOf)
def _one_of_sqlite(element: _OneOf, compiler: SQLCompiler, **kw: Any) -> str:
    column, keys = compiler.process(element.column, **kw), compiler.process(element.keys, **kw)
    return f"{column} IN (SELECT value FROM json_each({keys}))"  # noqa: S608 (compiled SQL)


def one_of(
    column: ColumnElement[Any] | QueryableAttribute[Any], keys: Iterable[Any]
) -> ColumnElement[bool]:
    """``column IN (keys)`` with the keys bound as one parameter. An expanded ``IN``
    binds one parameter per key: SQLAlchemy renders the statement again for every list
    (coercing each key) and the database prepares a new statement for every length. A
    sync batch asks for thousands of keys several times, so these lookups go as one
    array; the statement text never changes and stays in both caches. The column's own
    index serves it on both backends (SQLite: ``SEARCH ... USING INDEX``)."""
    if isinstance(column, QueryableAttribute):
        column = column.__clause_element__()
    return _OneOf(column, bindparam(None, list(keys), type_=_KeyList()))
