"""Parent-to-child relationship subqueries (``SELECT Name, (SELECT LastName FROM Contacts)
FROM Account``): the child rows of the parents a query returned.

Each subquery reads its child object once, in id order, for all the parents together
(never a scan per parent): a child is kept when its reference holds one of the parents'
Ids and the subquery's WHERE holds, then each parent's rows are ordered and cut to the
subquery's LIMIT, which counts per parent as on Salesforce. Rows are tuples laid out as
the outer query's (``Id``, the selected values, then the ids of the parents its own
relationship fields reach), so one renderer serves both.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from sandbox.salesforce.schema import Field
from sandbox.salesforce.soql import ChildQuery, Doc, FieldRef, OrderItem, Resolver, sort_key
from sandbox.store import DocumentStore

Row = tuple[Any, ...]
Keyed = tuple[tuple[Any, ...], Row]  # (ORDER BY keys, row)
#: one subquery's rows: parent Id -> the child rows under it, in output order
ChildRows = dict[str, list[Row]]

SCAN_BATCH = 5000  # rows per store read, for the outer scan too (query.py)


def references(fields: Iterable[FieldRef]) -> tuple[Field, ...]:
    """The reference fields whose parent ids trail a row (one per relationship used)."""
    return tuple({f.via.name: f.via for f in fields if f.via is not None}.values())


def project(
    doc: Doc, fields: tuple[FieldRef, ...], relationships: tuple[Field, ...], resolve: Resolver
) -> Row:
    """A record as a row: ``(Id, values..., parent ids...)``."""
    return (
        doc["Id"],
        *(f.get(doc, resolve) for f in fields),
        *(doc.get(rel.name) for rel in relationships),
    )


def ordered(keyed: list[Keyed], order: tuple[OrderItem, ...]) -> list[Row]:
    """Rows by their ORDER BY keys: a stable sort per key, last key first, each pass in
    its own direction (so nulls keep the place their rank gives them)."""
    for index in range(len(order) - 1, -1, -1):
        keyed.sort(key=_nth(index), reverse=order[index].desc)
    return [row for _, row in keyed]


def _nth(index: int) -> Callable[[Keyed], Any]:
    def key(pair: Keyed) -> Any:
        return pair[0][index]

    return key


def fetch(
    store: DocumentStore,
    children: tuple[ChildQuery, ...],
    parent_ids: set[str],
    resolve: Resolver,
    *,
    include_deleted: bool,
) -> tuple[ChildRows, ...]:
    """Every subquery's rows for ``parent_ids``, in the order of ``children``."""
    if not parent_ids:
        return tuple({} for _ in children)
    return tuple(
        _rows(store, child, parent_ids, resolve, include_deleted=include_deleted)
        for child in children
    )


def _rows(
    store: DocumentStore,
    child: ChildQuery,
    parent_ids: set[str],
    resolve: Resolver,
    *,
    include_deleted: bool,
) -> ChildRows:
    """One pass over the child object; without ORDER BY a parent stops taking rows at its
    LIMIT, with one all its matches are kept, sorted, then cut."""
    relationships = references(child.fields)
    keys = [sort_key(item) for item in child.order]
    via, where, limit = child.via.name, child.where, child.limit
    groups: dict[str, list[Keyed]] = {}
    for doc in store.iter(child.obj.name, batch_size=SCAN_BATCH):
        parent = doc.get(via)
        if parent not in parent_ids or (not include_deleted and doc.get("IsDeleted")):
            continue
        group = groups.setdefault(parent, [])
        if not keys and limit is not None and len(group) >= limit:
            continue
        if where is not None and not where(doc, resolve):
            continue
        row = project(doc, child.fields, relationships, resolve)
        group.append((tuple(k(doc, resolve) for k in keys), row))
    return {
        parent: ordered(keyed, child.order)[:limit] for parent, keyed in groups.items() if keyed
    }
