"""Golden records out of the hub store as Arrow batches, flattened like the system side.

The JSON text of a batch goes to Arrow's C++ JSON reader in one piece (records are never
parsed one by one in Python), against a schema derived from the canonical model so
every batch has the same column types. Nested objects become dotted columns
(``billing_address.city``), child lists (``lines``, ``items``) stay list-of-struct
columns; ``children`` turns one into its own table keyed by the parent's hub id.
"""

from __future__ import annotations

import enum
import io
import types
import typing
from collections.abc import Iterator
from datetime import date, datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj
import sqlalchemy as sa
from pydantic import BaseModel
from sqlalchemy import Engine

from hub.model import ENTITIES
from hub.store.models import GoldenRecord


def _arrow_type(annotation: Any, parse: bool) -> pa.DataType:
    """Arrow type of a pydantic annotation; with ``parse`` dates stay strings (Arrow's
    JSON reader does not parse them; they are cast afterwards)."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _arrow_type(typing.get_args(annotation)[0], parse)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _arrow_type(args[0], parse)
    if origin is typing.Literal:
        return pa.string()
    if origin in (tuple, list):
        return pa.list_(_arrow_type(typing.get_args(annotation)[0], parse))
    if isinstance(annotation, type):
        if annotation.__name__.endswith("Datetime"):  # pydantic's AwareDatetime & co.
            return pa.string() if parse else pa.timestamp("us", tz="UTC")
        if issubclass(annotation, BaseModel):
            return pa.struct(
                [(n, _arrow_type(f.annotation, parse)) for n, f in annotation.model_fields.items()]
            )
        if issubclass(annotation, bool):
            return pa.bool_()
        if issubclass(annotation, enum.Enum | str):
            return pa.string()
        if issubclass(annotation, int):
            return pa.int64()
        if issubclass(annotation, float):
            return pa.float64()
        if issubclass(annotation, datetime):
            return pa.string() if parse else pa.timestamp("us", tz="UTC")
        if issubclass(annotation, date):
            return pa.string() if parse else pa.date32()
    return pa.string()


def arrow_schema(entity: str, *, parse: bool = False) -> pa.Schema:
    """The Arrow schema of an entity's canonical records (nested, before flattening)."""
    model = ENTITIES[entity]
    return pa.schema([(n, _arrow_type(f.annotation, parse)) for n, f in model.model_fields.items()])


def flatten(table: pa.Table) -> pa.Table:
    """Struct columns to dotted columns, recursively (lists are left alone)."""
    while any(pa.types.is_struct(f.type) for f in table.schema):
        table = table.flatten()
    return table


def golden_batches(
    engine: Engine, entity: str, *, batch_size: int = 50_000, include_deleted: bool = False
) -> Iterator[pa.Table]:
    """Stream ``entity``'s golden records as flattened Arrow tables with a ``key`` column
    (the hub id), ``batch_size`` records at a time, in hub-id order."""
    parse_schema, final = arrow_schema(entity, parse=True), arrow_schema(entity)
    opts = pj.ParseOptions(explicit_schema=parse_schema, unexpected_field_behavior="ignore")
    if engine.dialect.name == "postgresql":
        text: Any = sa.cast(GoldenRecord.data, sa.Text)
    else:  # the stored JSON text itself, not the JSON type's Python objects
        text = sa.type_coerce(GoldenRecord.data, sa.Text)
    stmt = (
        sa.select(GoldenRecord.hub_id, text)
        .where(GoldenRecord.entity == entity)
        .order_by(GoldenRecord.hub_id)
    )
    if not include_deleted:
        stmt = stmt.where(GoldenRecord.deleted.is_(False))
    with engine.connect() as conn:
        result = conn.execution_options(yield_per=batch_size).execute(stmt)
        for part in result.partitions():
            keys = [r[0] for r in part]
            body = "\n".join(r[1] for r in part).encode()
            table = pj.read_json(io.BytesIO(body), parse_options=opts)
            table = table.cast(final)
            table = flatten(table).append_column("key", pa.array(keys, pa.string()))
            yield table


def load_golden(engine: Engine, entity: str, *, batch_size: int = 50_000) -> pa.Table:
    """All of an entity's golden records as one flattened table."""
    tables = list(golden_batches(engine, entity, batch_size=batch_size))
    if not tables:
        return flatten(arrow_schema(entity).empty_table()).append_column(
            "key", pa.array([], pa.string())
        )
    return pa.concat_tables(tables)


def children(table: pa.Table, name: str, key: str = "key") -> pa.Table:
    """A list column (``lines``) as its own flattened table, one row per child, with the
    parent's ``key``."""
    column = table.column(name).combine_chunks()
    parents = pc.list_parent_indices(column)
    flat = pa.Table.from_struct_array(pc.list_flatten(column))
    return flatten(flat).append_column(key, pc.take(table.column(key), parents))
