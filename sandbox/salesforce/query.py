"""Running a parsed SOQL query against the store, and paging its result.

One pass over the object's collection (the store reads it in id-ordered batches, so
memory holds the matching rows, never the raw collection; when the WHERE selects by Id or
an external id, only those records, read through the key index; when it bounds
``SystemModstamp`` / ``LastModifiedDate`` from below, only the records from that stamp on,
read through the store's stamp index): filter, project to the selected fields, sort if
asked, then slice OFFSET/LIMIT. Without ORDER BY the scan stops as
soon as OFFSET+LIMIT rows matched. Projected rows are tuples, so 100k rows stay small; REST pages
(``nextRecordsUrl``) and Bulk API 2.0 result pages (``Sforce-Locator``) are slices of one
result computed once, which also makes a repeated page request (a client retrying after
a dropped connection) answer the same rows. Parent-to-child subqueries are run for the
parents that made it into the result (:mod:`sandbox.salesforce.subquery`), once per query.
"""

from __future__ import annotations

import csv
import io
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from sandbox.salesforce import aggregate, subquery
from sandbox.salesforce.errors import ApiError
from sandbox.salesforce.repository import ids_by_key
from sandbox.salesforce.schema import Field, sobject
from sandbox.salesforce.soql import Aggregate, ChildQuery, Doc, FieldRef, Query, sort_key
from sandbox.salesforce.subquery import SCAN_BATCH, ChildRows
from sandbox.salesforce.values import to_csv
from sandbox.store import DocumentStore


@dataclass
class ResultSet:
    """Rows of one query: ``(Id, values..., parent ids...)`` in output order."""

    query: Query
    rows: list[tuple[Any, ...]]
    total: int
    relationships: tuple[Field, ...] = ()  # reference fields whose parent ids trail a row
    created: float = 0.0
    children: tuple[ChildRows, ...] = ()  # per subquery of the query, its rows per parent


class ParentCache:
    """Parents looked up by reference during one query (each parent read once)."""

    def __init__(self, store: DocumentStore) -> None:
        self.store = store
        self.docs: dict[tuple[str, str], Doc | None] = {}

    def __call__(self, via: Field, doc: Doc) -> Doc | None:
        parent_id = doc.get(via.name)
        if not parent_id or not via.reference_to:
            return None
        key = (via.reference_to[0], str(parent_id))
        if key not in self.docs:
            target = sobject(via.reference_to[0])
            self.docs[key] = self.store.get(target.name, key[1]) if target else None
        return self.docs[key]


def execute(store: DocumentStore, query: Query, *, include_deleted: bool) -> ResultSet:
    """Evaluate ``query``; ``include_deleted`` is queryAll (soft-deleted rows too)."""
    resolve = ParentCache(store)
    matching = _matching(store, query, resolve, include_deleted=include_deleted)
    if query.grouping is not None:
        grouped = aggregate.rows(query.grouping, matching, resolve)
        stop = None if query.limit is None else query.offset + query.limit
        grouped = grouped[query.offset : stop]
        return ResultSet(query, grouped, len(grouped))
    by_stamp = _by_stamp(query, include_deleted=include_deleted)
    # stamp-ordered candidates: no early stop, the rows are put in id order at the end
    stop_early = not (query.order or by_stamp)
    wanted = None if query.limit is None or not stop_early else query.offset + query.limit
    relationships = subquery.references(query.fields)
    keys = [sort_key(item) for item in query.order]
    matched: list[tuple[Any, ...]] = []
    sort_rows: list[tuple[tuple[Any, ...], tuple[Any, ...]]] = []
    count = 0
    for doc in matching:
        count += 1
        if query.count:
            if wanted is not None and count >= wanted:
                break
            continue
        row = subquery.project(doc, query.fields, relationships, resolve)
        if keys:
            sort_rows.append((tuple(k(doc, resolve) for k in keys), row))
        else:
            matched.append(row)
            if wanted is not None and len(matched) >= wanted:
                break
    if by_stamp:
        # the order a scan reads in, so ties of the ORDER BY keys stay as a scan leaves them
        sort_rows.sort(key=_row_id)
        matched.sort(key=_row_id_only)
    if keys:
        matched = subquery.ordered(sort_rows, query.order)
    stop = None if query.limit is None else query.offset + query.limit
    if query.count:
        total = max(0, min(count, stop if stop is not None else count) - query.offset)
        return ResultSet(query, [], total, relationships)
    rows = matched[query.offset : stop]
    children = subquery.fetch(
        store, query.children, {row[0] for row in rows}, resolve, include_deleted=include_deleted
    )
    return ResultSet(query, rows, len(rows), relationships, children=children)


def _matching(
    store: DocumentStore, query: Query, resolve: ParentCache, *, include_deleted: bool
) -> Iterator[Doc]:
    """The candidates the query can see (live ones, or all for queryAll) that its WHERE
    keeps, in the order the candidates are read."""
    where = query.where
    for doc in _candidates(store, query, include_deleted=include_deleted):
        if not include_deleted and doc.get("IsDeleted"):
            continue
        if where is None or where(doc, resolve):
            yield doc


def _by_key(query: Query, *, include_deleted: bool) -> bool:
    """Whether the records are read by key (``Lookup``). The external-id index holds live
    records only, so queryAll on an external id does not."""
    lookup = query.lookup
    return lookup is not None and not (include_deleted and lookup.field.name != "Id")


def _by_stamp(query: Query, *, include_deleted: bool) -> bool:
    """Whether the records are read from the stamp index (``Floor``), in (stamp, id)
    order: when the WHERE bounds a stamp from below and does not select by key."""
    return query.floor is not None and not _by_key(query, include_deleted=include_deleted)


def _candidates(store: DocumentStore, query: Query, *, include_deleted: bool) -> Iterator[Doc]:
    """The records ``query`` can match: read by key in id order when the WHERE selects by
    key (``Lookup``); from the stamp index, in (stamp, id) order, when it bounds a stamp
    from below (``Floor``: the index holds deleted records too, so queryAll may use it);
    else the whole object scanned in id order."""
    obj = query.obj
    lookup = query.lookup
    floor = query.floor
    if lookup is None or not _by_key(query, include_deleted=include_deleted):
        if floor is None:
            yield from store.iter(obj.name, batch_size=SCAN_BATCH)
        else:
            yield from store.iter_from(obj.name, floor.field, floor.low, batch_size=SCAN_BATCH)
        return
    record_ids = {
        record_id
        for value in lookup.values
        if value not in (None, "")
        for record_id in ids_by_key(store, obj, lookup.field, value)
    }
    for record_id in sorted(record_ids):
        doc = store.get(obj.name, record_id)
        if doc is not None:
            yield doc


def _row_id(pair: tuple[tuple[Any, ...], tuple[Any, ...]]) -> Any:
    return pair[1][0]


def _row_id_only(row: tuple[Any, ...]) -> Any:
    return row[0]


# -- rendering -----------------------------------------------------------------------------
def rest_records(rs: ResultSet, start: int, end: int, version: str) -> list[dict[str, Any]]:
    """Rows ``start:end`` as REST query records (``attributes`` and nested parents)."""
    q = rs.query
    if q.grouping is not None:
        names = [c.name if isinstance(c, Aggregate) else c.field.name for c in q.grouping.columns]
        return [
            {"attributes": {"type": "AggregateResult"}, **dict(zip(names, row, strict=True))}
            for row in rs.rows[start:end]
        ]
    base = f"/services/data/v{version}/sobjects/"
    rel_index = _relationship_index(rs.relationships)
    obj, fields = q.obj.name, q.fields
    if not q.children:  # the common case, and the hub's: no per-row subquery work
        return [_record(obj, fields, rel_index, row, base) for row in rs.rows[start:end]]
    out: list[dict[str, Any]] = []
    for row in rs.rows[start:end]:
        nested = [
            (child.position, child.name, _child_records(child, rows.get(row[0]), base))
            for child, rows in zip(q.children, rs.children, strict=True)
        ]
        out.append(_record(obj, fields, rel_index, row, base, nested))
    return out


def _relationship_index(relationships: tuple[Field, ...]) -> dict[str, int]:
    """Where each reference field's parent id trails a row (after the selected values)."""
    return {rel.name: i for i, rel in enumerate(relationships)}


def _record(
    obj: str,
    fields: tuple[FieldRef, ...],
    rel_index: dict[str, int],
    row: tuple[Any, ...],
    base: str,
    nested: list[tuple[int, str, Any]] | None = None,
) -> dict[str, Any]:
    """One row as a REST record: parents' fields nested under their relationship, and
    the subquery results (position, name, value) placed where the select list had them.
    Runs for every row a query returns, so the per-query work is done by the caller."""
    pending = nested.copy() if nested else None
    n_fields = len(fields)
    record: dict[str, Any] = {"attributes": {"type": obj, "url": base + obj + "/" + row[0]}}
    for i, ref in enumerate(fields):
        while pending and pending[0][0] == i:
            _, name, value = pending.pop(0)
            record[name] = value
        value = row[1 + i]
        if ref.via is None:
            record[ref.field.name] = value
            continue
        rel_name = ref.via.relationship_name or ref.via.name
        parent_id = row[1 + n_fields + rel_index[ref.via.name]]
        if parent_id is None:
            record[rel_name] = None
            continue
        parent = record.get(rel_name)
        if parent is None:
            assert ref.target is not None
            target = ref.target.name
            parent = record[rel_name] = {
                "attributes": {"type": target, "url": base + target + "/" + str(parent_id)}
            }
        parent[ref.field.name] = value
    for _, name, value in pending or ():
        record[name] = value
    return record


def _child_records(
    child: ChildQuery, rows: list[tuple[Any, ...]] | None, base: str
) -> dict[str, Any] | None:
    """A subquery's result under one parent: null without rows, else a query result of
    its own (all of it: ``done`` true)."""
    if not rows:
        return None
    rel_index = _relationship_index(subquery.references(child.fields))
    records = [_record(child.obj.name, child.fields, rel_index, r, base) for r in rows]
    return {"totalSize": len(records), "done": True, "records": records}


def csv_header(query: Query) -> list[str]:
    return [f.label for f in query.fields]


def csv_page(
    rs: ResultSet, start: int, end: int, *, delimiter: str = ",", line_ending: str = "\n"
) -> str:
    """Rows ``start:end`` as Bulk API 2.0 CSV (header first, every value quoted)."""
    buffer = io.StringIO()
    writer = csv.writer(
        buffer, delimiter=delimiter, lineterminator=line_ending, quoting=csv.QUOTE_ALL
    )
    fields = rs.query.fields
    writer.writerow(csv_header(rs.query))
    kinds = [f.field.type for f in fields]
    for row in rs.rows[start:end]:
        writer.writerow([to_csv(row[1 + i], kinds[i]) for i in range(len(fields))])
    return buffer.getvalue()


# -- REST query cursors --------------------------------------------------------------------
@dataclass
class Cursor:
    result: ResultSet
    include_deleted: bool
    lock: threading.Lock = field(default_factory=threading.Lock)


class Cursors:
    """Open query locators (``01g...``), least recently used dropped past ``capacity`` -
    Salesforce too expires old cursors (``INVALID_QUERY_LOCATOR``)."""

    def __init__(self, capacity: int = 50) -> None:
        self.capacity = capacity
        self._lock = threading.Lock()
        self._open: OrderedDict[str, Cursor] = OrderedDict()
        self._serial = 0

    def open(self, cursor: Cursor) -> str:
        from sandbox.salesforce import ids

        with self._lock:
            self._serial += 1
            locator = ids.make_id("01g", self._serial)
            self._open[locator] = cursor
            while len(self._open) > self.capacity:
                self._open.popitem(last=False)
        return locator

    def get(self, locator: str) -> Cursor:
        with self._lock:
            cursor = self._open.get(locator)
            if cursor is None:
                raise ApiError(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
            self._open.move_to_end(locator)
            return cursor
