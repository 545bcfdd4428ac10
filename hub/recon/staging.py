"""Systems' snapshots and the golden records as DuckDB tables, ready for ``compare``.

A system is staged through its mapping, exactly as the sync reads it: every batch of
``connector.read_snapshot(entity)`` goes through ``Mapper.to_canonical``, then to Arrow
with the canonical model's types (``hub.recon.golden.arrow_schema``, pruned to the fields
this system maps, so a field the system does not carry is never mistaken for a NULL), is
flattened the way ``golden.py`` flattens golden records (``billing_address.city``; child
lists such as ``lines`` become their own table keyed by the parent's hub id) and appended
to a DuckDB table. One batch is in Python memory at a time.

Nothing is dropped silently: a record that cannot be mapped (or whose values do not fit
the canonical types) goes to quarantine with the reason, as the sync would put it, and its
key is remembered so that reconciliation does not also call it ``missing``. A record that
carries no hub id and is not linked through the xref table is staged under
``<system>:<system id>`` and so becomes an ``orphan``.
"""

# ruff: noqa: S608 - SQL is built from quoted identifiers; no caller values are spliced in.

from __future__ import annotations

import enum
import io
import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.json as pj
from sqlalchemy import Engine

from connectors.base import Connector, NativeRecord, Window
from hub.mapping.mapper import Mapper, MappingValueError
from hub.mapping.spec import MappingSpec
from hub.model import ENTITIES
from hub.recon.engine import quote, run
from hub.recon.golden import arrow_schema, children, flatten, golden_batches
from hub.store import repo
from hub.store.db import session_factory

log = logging.getLogger("hub.recon")

#: Child collections of the canonical model and the column naming a child in its parent.
CHILD_KEYS: dict[str, str] = {"lines": "line_no", "items": "item_id"}
#: Canonical fields that are bookkeeping, not data: never compared.
NOT_COMPARED = frozenset({"updated_at"})
_EXTERNAL_IDS = "external_ids"


@dataclass
class Staged:
    """One (system, entity) in the DuckDB session: table names, what was compared, counts."""

    system: str
    entity: str
    table: str
    children: dict[str, str] = field(default_factory=dict)
    fields: list[str] = field(default_factory=list)
    child_fields: dict[str, list[str]] = field(default_factory=dict)
    rows: int = 0
    quarantined: int = 0
    unlinked: int = 0
    #: keys of records the system has but that could not be mapped (quarantined)
    unmappable: set[str] = field(default_factory=set)

    def counts(self) -> dict[str, int]:
        return {"rows": self.rows, "quarantined": self.quarantined, "unlinked": self.unlinked}


def table_name(system: str, entity: str, child: str | None = None) -> str:
    return f"stage_{system}_{entity}" + (f"_{child}" if child else "")


def golden_table(entity: str, child: str | None = None) -> str:
    return f"golden_{entity}" + (f"_{child}" if child else "")


# -- schema -------------------------------------------------------------------------------
def _prune(fields: Iterable[pa.Field], paths: set[str]) -> list[pa.Field]:
    """Keep the fields named by dotted ``paths`` (a struct keeps only the sub-fields
    named; a list of structs is pruned element-wise)."""
    out = []
    for f in fields:
        if f.name in paths:
            out.append(f)
            continue
        sub = {p.split(".", 1)[1] for p in paths if p.startswith(f.name + ".")}
        if not sub:
            continue
        if pa.types.is_struct(f.type):
            out.append(pa.field(f.name, pa.struct(_prune(list(f.type), sub))))
        elif pa.types.is_list(f.type) and pa.types.is_struct(f.type.value_type):
            inner = pa.struct(_prune(list(f.type.value_type), sub))
            out.append(pa.field(f.name, pa.list_(inner)))
    return out


def mapped_paths(spec: MappingSpec) -> set[str]:
    """Canonical dotted paths this system carries (children as ``lines.amount_minor``)."""
    paths = {
        name
        for name, fmap in spec.fields.items()
        if not name.startswith(_EXTERNAL_IDS + ".")
        and name not in NOT_COMPARED
        and name not in spec.children  # the raw child rows; the children block maps them
        and fmap.view is None  # a view of the owner's list (compared by the sync)
    }
    for name, child in spec.children.items():
        if child.view is not None:
            continue  # a view of the owner's list (compared by the sync), not the list
        key = CHILD_KEYS.get(name)
        paths |= {f"{name}.{c}" for c in child.fields if c not in NOT_COMPARED}
        if key:
            paths.add(f"{name}.{key}")
    return paths


def staged_schema(spec: MappingSpec, *, parse: bool = False) -> pa.Schema:
    """The canonical Arrow schema pruned to what ``spec`` maps (before flattening)."""
    return pa.schema(_prune(arrow_schema(spec.entity, parse=parse), mapped_paths(spec)))


# -- loading into DuckDB ------------------------------------------------------------------
def _append(con: duckdb.DuckDBPyConnection, name: str, table: pa.Table, created: set[str]) -> None:
    """Append ``table`` to DuckDB table ``name`` (created from the first table seen)."""
    view = f"_arrow_{name}"
    con.register(view, table)
    try:
        if name in created:
            run(con, f"INSERT INTO {quote(name)} BY NAME SELECT * FROM {quote(view)}")
        else:
            run(con, f"CREATE OR REPLACE TABLE {quote(name)} AS SELECT * FROM {quote(view)}")
            created.add(name)
    finally:
        con.unregister(view)


def _split(table: pa.Table, child_names: Sequence[str]) -> tuple[pa.Table, dict[str, pa.Table]]:
    """A flattened parent table and one table per child list column."""
    names = [n for n in child_names if n in table.schema.names]
    kids = {name: flatten(children(table, name)) for name in names}
    parent = table.drop_columns([n for n in kids])
    return parent, kids


def load_golden(
    con: duckdb.DuckDBPyConnection, engine: Engine, entity: str, *, batch_size: int = 50_000
) -> dict[str, int]:
    """``golden_<entity>`` (and ``golden_<entity>_<child>``) tables, streamed from the store
    batch by batch. Returns row counts per table."""
    created: set[str] = set()
    child_names = [n for n in CHILD_KEYS if n in ENTITIES[entity].model_fields]
    counts: dict[str, int] = {}
    for batch in golden_batches(engine, entity, batch_size=batch_size):
        parent, kids = _split(batch, child_names)
        _append(con, golden_table(entity), parent, created)
        counts[golden_table(entity)] = counts.get(golden_table(entity), 0) + parent.num_rows
        for name, kid in kids.items():
            _append(con, golden_table(entity, name), kid, created)
            counts[golden_table(entity, name)] = counts.get(golden_table(entity, name), 0) + (
                kid.num_rows
            )
    if golden_table(entity) not in created:
        empty = flatten(arrow_schema(entity).empty_table()).append_column(
            "key", pa.array([], pa.string())
        )
        parent, kids = _split(empty, child_names)
        _append(con, golden_table(entity), parent, created)
        for name, kid in kids.items():
            _append(con, golden_table(entity, name), kid, created)
    return counts


def _plain(value: Any) -> Any:
    """JSON for values the mapper may hand over as Python objects."""
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, enum.Enum):
        return value.value
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


class _CachedXref:
    """The xref table as the mapper's reference resolver, one query per unseen id. An id
    the hub does not know resolves to ``<system>:<id>`` instead of failing the record: the
    reference is then reported as broken (it points at nothing the hub knows)."""

    def __init__(self, engine: Engine) -> None:
        self.sessions = session_factory(engine)
        self.to_hub_cache: dict[tuple[str, str, str], str | None] = {}

    def prefetch(self, entity: str, system: str, ids: Sequence[str]) -> dict[str, str]:
        wanted = [i for i in ids if (entity, system, i) not in self.to_hub_cache]
        if wanted:
            with self.sessions() as s:
                found = repo.hub_ids_for(s, entity, system, wanted)
            for i in wanted:
                self.to_hub_cache[(entity, system, i)] = found.get(i)
        return {
            i: hub for i in ids if (hub := self.to_hub_cache.get((entity, system, i))) is not None
        }

    def to_hub(self, entity: str, system: str, external_id: str) -> str | None:
        found = self.prefetch(entity, system, [external_id]).get(external_id)
        return found if found is not None else f"{system}:{external_id}"

    def to_system(self, entity: str, system: str, hub_id: str) -> str | None:
        with self.sessions() as s:
            return repo.external_ids_for(s, entity, system, [hub_id]).get(hub_id)


def _currencies(engine: Engine, entity: str, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Golden currency per hub id: context for systems whose amounts carry no currency."""
    if not keys:
        return {}
    with session_factory(engine)() as s:
        rows = repo.golden_for(s, entity, list(keys))
        return {k: {"currency": g.data.get("currency")} for k, g in rows.items()}


def stage_system(
    con: duckdb.DuckDBPyConnection,
    engine: Engine,
    connector: Connector,
    spec: MappingSpec,
    code_lists: Mapping[str, Mapping[str, str]],
    *,
    window: Window | None = None,
) -> Staged:
    """Read ``spec.entity`` from ``connector`` in full (or within ``window``) into
    ``stage_<system>_<entity>`` tables; unmappable records go to quarantine."""
    system, entity = spec.system, spec.entity
    xref = _CachedXref(engine)
    mapper = Mapper(spec, {k: dict(v) for k, v in code_lists.items()}, xref)
    parse_schema, final_schema = staged_schema(spec, parse=True), staged_schema(spec)
    opts = pj.ParseOptions(explicit_schema=parse_schema, unexpected_field_behavior="ignore")
    key_field = ENTITIES[entity].key_field
    money = any("money_decimal" in f.transform for f in spec.fields.values()) or any(
        "money_decimal" in f.transform for c in spec.children.values() for f in c.fields.values()
    )
    child_names = [n for n, c in spec.children.items() if n in CHILD_KEYS and c.view is None]
    staged = Staged(system, entity, table_name(system, entity))
    staged.children = {n: table_name(system, entity, n) for n in child_names}
    created: set[str] = set()
    quarantine: list[tuple[str, NativeRecord, str, list[Any]]] = []

    def to_arrow(rows: list[dict[str, Any]]) -> pa.Table:
        body = "\n".join(json.dumps(r, default=_plain) for r in rows).encode()
        return pj.read_json(io.BytesIO(body), parse_options=opts).cast(final_schema)

    for batch in connector.read_snapshot(entity, window):
        sids = [mapper.system_id(r) for r in batch.records]
        linked = xref.prefetch(entity, system, [s for s in sids if s])
        hub_ids = [
            mapper.hub_id(r) or (linked.get(s) if s else None)
            for r, s in zip(batch.records, sids, strict=True)
        ]
        context = _currencies(engine, entity, [h for h in hub_ids if h]) if money else {}
        rows: list[dict[str, Any]] = []
        keys: list[str] = []
        exts: list[str | None] = []
        natives: list[NativeRecord] = []
        for native, sid, hub in zip(batch.records, sids, hub_ids, strict=True):
            try:
                canonical = mapper.to_canonical(native, context=context.get(hub or ""))
            except MappingValueError as exc:
                key = hub or sid or "<unkeyed>"
                quarantine.append((key, native, str(exc), [asdict(p) for p in exc.problems]))
                staged.unmappable.add(key)
                continue
            if hub is None and key_field != "hub_id" and canonical.get(key_field):
                hub = str(canonical[key_field])
            if hub is None:
                hub = f"{system}:{sid}"
                staged.unlinked += 1
            canonical.pop(_EXTERNAL_IDS, None)
            for name in mapper.view_names:  # not compared here (see mapped_paths)
                canonical.pop(name, None)
            rows.append(canonical)
            keys.append(hub)
            exts.append(sid)
            natives.append(native)
        if not rows:
            continue
        try:
            table = to_arrow(rows)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
            # find the records whose values do not fit the canonical types, one by one
            good = []
            for i, row in enumerate(rows):
                try:
                    to_arrow([row])
                    good.append(i)
                except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
                    reason = f"{system} {entity} {keys[i]}: value does not fit the model: {exc}"
                    quarantine.append((keys[i], natives[i], reason, []))
                    staged.unmappable.add(keys[i])
            rows = [rows[i] for i in good]
            keys = [keys[i] for i in good]
            exts = [exts[i] for i in good]
            if not rows:
                continue
            table = to_arrow(rows)
        table = flatten(table)
        table = table.append_column("key", pa.array(keys, pa.string()))
        table = table.append_column("external_id", pa.array(exts, pa.string()))
        parent, kids = _split(table, child_names)
        _append(con, staged.table, parent, created)
        for name, kid in kids.items():
            _append(
                con,
                staged.children[name],
                kid.drop_columns(["external_id"]) if "external_id" in kid.schema.names else kid,
                created,
            )
        staged.rows += parent.num_rows
        if quarantine:
            staged.quarantined += _quarantine(engine, system, entity, quarantine)
            quarantine = []
    if quarantine:
        staged.quarantined += _quarantine(engine, system, entity, quarantine)
    if staged.table not in created:  # nothing read: empty tables with the right columns
        empty = flatten(final_schema.empty_table())
        empty = empty.append_column("key", pa.array([], pa.string()))
        empty = empty.append_column("external_id", pa.array([], pa.string()))
        parent, kids = _split(empty, child_names)
        _append(con, staged.table, parent, created)
        for name, kid in kids.items():
            _append(con, staged.children[name], kid, created)
    reserved = {"key", "external_id"}
    staged.fields = [c for c in _columns(con, staged.table) if c not in reserved]
    staged.child_fields = {
        n: [c for c in _columns(con, t) if c not in reserved | {CHILD_KEYS[n]}]
        for n, t in staged.children.items()
    }
    if staged.quarantined:
        log.warning(
            "%s %s: %d record(s) could not be mapped and went to quarantine",
            system,
            entity,
            staged.quarantined,
        )
    return staged


def _columns(con: duckdb.DuckDBPyConnection, table: str) -> list[str]:
    return [r[0] for r in con.execute(f"DESCRIBE {quote(table)}").fetchall()]


def _quarantine(
    engine: Engine,
    system: str,
    entity: str,
    entries: list[tuple[str, NativeRecord, str, list[Any]]],
) -> int:
    with session_factory(engine).begin() as s:
        for key, payload, reason, errors in entries:
            repo.quarantine(
                s,
                system=system,
                entity=entity,
                external_key=key,
                payload=json.loads(json.dumps(payload, default=_plain)),
                reason=f"reconciliation: {reason}",
                errors=errors,
                direction="inbound",
            )
    return len(entries)
