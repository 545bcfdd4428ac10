"""The allocation resource: which fields a client may write, how they are validated, and
the fulfilment lifecycle the WMS enforces.

An allocation reserves ``quantity`` units of ``sku`` at ``location`` for one delivery of
one subscription item. The hub creates and edits the plan (sku, location, quantity,
delivery date, references) while the allocation is still ``reserved``; the warehouse moves
it along ``reserved -> picked -> shipped`` or ``released`` (cancelled). Once picked, the
plan is frozen: the goods are on a cart, changing what was ordered is a new allocation.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sandbox.wms.errors import FieldIssue, WmsError

STATUSES = ("reserved", "picked", "shipped", "released")
OPEN_STATUSES = ("reserved", "picked")
#: Allowed status moves; anything else is refused naming the ``status`` field.
TRANSITIONS: dict[str, frozenset[str]] = {
    "reserved": frozenset({"picked", "released"}),
    "picked": frozenset({"shipped", "released"}),
    "shipped": frozenset(),
    "released": frozenset(),
}
#: Fields of the plan, editable only while the allocation is ``reserved``.
PLAN_FIELDS = ("sku", "location", "quantity", "delivery_date", "order_ref", "line_ref")
WRITABLE = ("external_ref", "status", *PLAN_FIELDS)
#: Maintained by the WMS; accepted on input (clients echo what they read) but ignored.
READ_ONLY = ("id", "created_at", "updated_at", "version")
REQUIRED_ON_CREATE = ("sku", "location", "quantity", "delivery_date")

LOCATION = re.compile(r"^[A-Z0-9]{4}$")
MAX_QUANTITY = 1_000_000_000
MAX_TEXT = 64


def format_ts(moment: datetime) -> str:
    """The WMS's one timestamp format: UTC, microseconds, ``Z``. Fixed width, so the
    string order is the time order (the list index sorts on these strings)."""
    if moment.tzinfo is None:
        raise ValueError(f"timestamp without a timezone: {moment!r}")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_ts(value: Any) -> datetime:
    """An ISO 8601 timestamp with an offset (``Z`` allowed); naive values are refused
    because a cursor in an unknown zone silently skips or repeats hours."""
    if isinstance(value, datetime):
        moment = value
    else:
        moment = datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(f"{value!r} has no timezone offset")
    return moment.astimezone(UTC)


def normalise_ts(value: Any) -> str:
    return format_ts(parse_ts(value))


def next_ts(previous: str | None, now: datetime | None = None) -> str:
    """A commit timestamp strictly after every earlier one, even if the clock stalls or
    steps back: a reader that has paged past (t, id) must never see a later commit land
    behind it at t."""
    moment = now or datetime.now(UTC)
    if previous is not None:
        floor = parse_ts(previous) + timedelta(microseconds=1)
        moment = max(moment, floor)
    return format_ts(moment)


def validate_changes(payload: Any, *, creating: bool) -> dict[str, Any]:
    """The writable fields of ``payload``, type-checked; every problem is reported at once
    (422 ``validation_failed`` with one detail per field)."""
    if not isinstance(payload, dict):
        raise WmsError(422, "validation_failed", "an allocation must be a JSON object")
    issues: list[FieldIssue] = []
    out: dict[str, Any] = {}
    for name, value in payload.items():
        if name in READ_ONLY:
            continue
        if name not in WRITABLE:
            issues.append(FieldIssue(name, "unknown_field", f"unknown field {name!r}"))
            continue
        try:
            out[name] = _CHECKS[name](value)
        except ValueError as exc:
            issues.append(FieldIssue(name, "invalid", str(exc)))
    if creating:
        for name in REQUIRED_ON_CREATE:
            if out.get(name) is None and not any(i.field == name for i in issues):
                issues.append(FieldIssue(name, "required", f"{name} is required"))
    if issues:
        fields = ", ".join(sorted({i.field for i in issues}))
        raise WmsError(422, "validation_failed", f"invalid allocation: {fields}", issues)
    return out


def check_transition(current: str, target: str) -> None:
    if target == current:
        return
    if target not in TRANSITIONS[current]:
        allowed = ", ".join(sorted(TRANSITIONS[current])) or "none (final status)"
        raise WmsError(
            409,
            "invalid_status_transition",
            f"status cannot change from {current} to {target}; allowed: {allowed}",
            [FieldIssue("status", "invalid_transition", f"{current} -> {target} not allowed")],
        )


def check_plan_change(doc: dict[str, Any], changes: dict[str, Any]) -> None:
    """Plan fields may only change while the allocation is reserved."""
    if doc["status"] == "reserved":
        return
    frozen = [f for f in PLAN_FIELDS if f in changes and changes[f] != doc.get(f)]
    if frozen:
        raise WmsError(
            409,
            "allocation_not_modifiable",
            f"allocation {doc['id']} is {doc['status']}: {', '.join(frozen)} can no longer change",
            [FieldIssue(f, "frozen", f"{f} is fixed once {doc['status']}") for f in frozen],
        )


# -- field checks ----------------------------------------------------------------------------
def _text(value: Any, *, required: bool = True) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ValueError("must be a non-empty string")
    if len(value.strip()) > MAX_TEXT:
        raise ValueError(f"longer than {MAX_TEXT} characters")
    return value.strip()


def _location(value: Any) -> str:
    if not isinstance(value, str) or not LOCATION.match(value):
        raise ValueError(f"must be a 4-character warehouse code like US01, not {value!r}")
    return value


def _quantity(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"must be an integer, not {value!r}")
    if not 0 < value <= MAX_QUANTITY:
        raise ValueError(f"must be between 1 and {MAX_QUANTITY}, not {value}")
    return value


def _date(value: Any) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        raise ValueError(f"must be an ISO date YYYY-MM-DD, not {value!r}")
    try:
        return date.fromisoformat(value).isoformat()
    except ValueError:
        raise ValueError(f"not a calendar date: {value!r}") from None


def _status(value: Any) -> str:
    if value not in STATUSES:
        raise ValueError(f"must be one of {', '.join(STATUSES)}, not {value!r}")
    return str(value)


_CHECKS: dict[str, Any] = {
    "external_ref": _text,
    "sku": _text,
    "location": _location,
    "quantity": _quantity,
    "delivery_date": _date,
    "status": _status,
    "order_ref": lambda v: _text(v, required=False),
    "line_ref": lambda v: _text(v, required=False),
}
