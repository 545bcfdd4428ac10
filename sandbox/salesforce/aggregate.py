"""Aggregate SOQL (``GROUP BY``, ``COUNT(Id)``, ``SUM(Amount) total``...): the matching
records folded into one row per group, as ``AggregateResult`` records.

Groups are keyed as the WHERE compares (text case-insensitively), and show the first
value read; a query without ``GROUP BY`` is one group, present even when nothing matched
(``COUNT`` 0, the others null). ``COUNT`` and ``COUNT_DISTINCT`` ignore nulls, as do the
others; ``SUM`` of an integer field is an integer, of any other number a decimal."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from sandbox.salesforce.soql import Aggregate, Doc, FieldRef, Grouping, Resolver, value_key

Row = tuple[Any, ...]


def rows(grouping: Grouping, docs: Iterable[Doc], resolve: Resolver) -> list[Row]:
    """One row per group, in the order ``grouping`` asks for (else by group key)."""
    aggregates = [c for c in grouping.columns if isinstance(c, Aggregate)]
    groups: dict[tuple[Any, ...], tuple[dict[str, Any], list[list[Any]]]] = {}
    for doc in docs:
        values = [ref.get(doc, resolve) for ref in grouping.by]
        key = tuple(value_key(ref.field, v) for ref, v in zip(grouping.by, values, strict=True))
        group = groups.get(key)
        if group is None:
            shown = {ref.label: v for ref, v in zip(grouping.by, values, strict=True)}
            group = groups[key] = (shown, [[] for _ in aggregates])
        for seen, aggregate in zip(group[1], aggregates, strict=True):
            value = aggregate.ref.get(doc, resolve)
            if value is not None:
                seen.append(value)
    if not grouping.by and not groups:
        groups[()] = ({}, [[] for _ in aggregates])
    out = []
    for key in sorted(groups, key=_sortable):
        shown, seen = groups[key]
        results = iter([_fold(a, s) for a, s in zip(aggregates, seen, strict=True)])
        out.append(
            tuple(
                shown[c.label] if isinstance(c, FieldRef) else next(results)
                for c in grouping.columns
            )
        )
    for index, desc, nulls_first in reversed(grouping.order):  # stable: last key first
        out.sort(key=_by_column(index, int(nulls_first == desc)), reverse=desc)
    return out


def _by_column(index: int, null_rank: int) -> Callable[[Row], tuple[int, Any]]:
    """Sort key on one column; nulls placed by a rank that survives ``reverse``."""

    def key(row: Row) -> tuple[int, Any]:
        value = row[index]
        return (null_rank, 0) if value is None else (1 - null_rank, value)

    return key


def _sortable(key: tuple[Any, ...]) -> tuple[tuple[int, Any], ...]:
    return tuple((0, "") if v is None else (1, v) for v in key)


def _fold(aggregate: Aggregate, values: list[Any]) -> Any:
    function, f = aggregate.function, aggregate.ref.field
    if function == "COUNT":
        return len(values)
    if function == "COUNT_DISTINCT":
        return len({value_key(f, v) for v in values})
    if not values:
        return None
    if function == "SUM":
        total = sum(float(v) for v in values)
        return int(total) if f.type == "int" else total
    if function == "AVG":
        return sum(float(v) for v in values) / len(values)
    pick = min if function == "MIN" else max
    return pick(values, key=lambda v: value_key(f, v))
