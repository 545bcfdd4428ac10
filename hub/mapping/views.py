"""Views of a child list: what a system holds of a list the hub keeps in full.

Billing keeps every version of a subscription item (``effective_from`` / ``effective_to``);
SAP keeps a sales contract's items as they stand: one contract item per item in effect,
with what it bills per period; Salesforce shows them as a line of text each. A mapping
says so with ``view``: on a child block one of :class:`ChildView` (rows), on a field one
of :class:`FieldView` (one value). The mapper then pushes the view instead of the list,
and reads the system's copy back in the same form, so a push fingerprints like its echo.

A view is derived from its owner's list: it is compared and pushed, never merged back
into the golden record (``Mapper.view_names``), and the reconciliation leaves it out.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Collection, Iterable, Mapping
from datetime import UTC, date, datetime
from typing import Any

from hub.model import SubscriptionItem
from hub.pricing import item_period_amount, items_in_effect


class ChildView(enum.StrEnum):
    """The views a child block may declare (mappings' ``children.<name>.view``)."""

    #: the version of each subscription item in effect today, with
    #: ``period_amount_minor``: one billing period's charge of it (hub.pricing)
    IN_EFFECT = "in_effect"


#: canonical fields a view adds to its rows (they are not fields of the child model)
DERIVED: dict[ChildView, frozenset[str]] = {
    ChildView.IN_EFFECT: frozenset({"period_amount_minor"}),
}
#: the field a view's rows are ordered by (so the pushed and the read rows compare equal)
ROW_KEY: dict[ChildView, str] = {ChildView.IN_EFFECT: "item_id"}


def today() -> date:
    """The day a view is taken on: today in UTC (the hub's clock)."""
    return datetime.now(UTC).date()


def in_effect(
    rows: Iterable[Mapping[str, Any]], fields: Collection[str], day: date
) -> list[dict[str, Any]]:
    """Each item's version in effect on ``day``, restricted to ``fields``, with
    ``period_amount_minor``: what a billing period starting on ``day`` charges for it
    (a usage item: its flat fee; an expired discount not applied)."""
    items = [SubscriptionItem.model_validate(row) for row in rows]
    out = []
    for item in items_in_effect(items, day):
        row = item.model_dump(mode="json")
        view = {f: row.get(f) for f in fields if f not in DERIVED[ChildView.IN_EFFECT]}
        if "period_amount_minor" in fields:
            view["period_amount_minor"] = item_period_amount(item, day)
        out.append(view)
    return sort_rows(ChildView.IN_EFFECT, out)


def sort_rows(view: ChildView, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``rows`` in the view's order (by its row key; rows without one last)."""
    key = ROW_KEY[view]
    return sorted(rows, key=lambda r: (r.get(key) is None, str(r.get(key) or "")))


RowsView = Callable[[Iterable[Mapping[str, Any]], Collection[str], date], list[dict[str, Any]]]
VIEWS: dict[ChildView, RowsView] = {
    ChildView.IN_EFFECT: in_effect,
}


def apply(
    view: ChildView, rows: Iterable[Mapping[str, Any]], fields: Collection[str], day: date
) -> list[dict[str, Any]]:
    """The rows a system holds of the child list ``rows`` under ``view`` on ``day``."""
    return VIEWS[view](rows, fields, day)


class FieldView(enum.StrEnum):
    """The views a field may declare (mappings' ``fields.<name>.view``): one value
    derived from the canonical list of the same name."""

    #: each subscription item in effect today as ``<sku> x <quantity>``, one per line in
    #: item_id order (None: no item in effect)
    ITEM_LINES = "item_lines"


def item_lines(rows: Iterable[Mapping[str, Any]], day: date) -> str | None:
    """The items in effect on ``day`` as text, one ``<sku> x <quantity>`` line each."""
    current = in_effect(rows, ("item_id", "sku", "quantity"), day)
    return "\n".join(f"{r['sku']} x {r['quantity']}" for r in current) or None


FIELD_VIEWS: dict[FieldView, Callable[[Iterable[Mapping[str, Any]], date], Any]] = {
    FieldView.ITEM_LINES: item_lines,
}


def apply_field(view: FieldView, rows: Iterable[Mapping[str, Any]], day: date) -> Any:
    """The value a system holds of the list ``rows`` under the field view ``view``."""
    return FIELD_VIEWS[view](rows, day)
