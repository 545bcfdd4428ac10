"""The ``search`` query parameter of ``GET /api/rest/v1/products``.

``{"updated": [{"operator": ">", "value": "2025-06-30 12:00:00"}], "family": [...]}``: every
property maps to a list of conditions, all of which must hold (AND). Dates are
``YYYY-MM-DD hh:mm:ss`` in the server's time zone, which for the sandbox (as for Akeneo
SaaS) is UTC, compared at Akeneo's one-second precision."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sandbox.pim.errors import PimError

Predicate = Callable[[dict[str, Any]], bool]
DATE_FORMAT = "%Y-%m-%d %H:%M:%S"

_DATE_OPERATORS = ("=", "!=", "<", ">", "BETWEEN", "NOT BETWEEN", "SINCE LAST N DAYS")
OPERATORS: dict[str, tuple[str, ...]] = {
    "identifier": ("=", "!=", "IN", "NOT IN", "STARTS WITH", "CONTAINS", "DOES NOT CONTAIN"),
    "enabled": ("=", "!="),
    "family": ("IN", "NOT IN", "EMPTY", "NOT EMPTY"),
    "groups": ("IN", "NOT IN", "EMPTY", "NOT EMPTY"),
    "categories": ("IN", "NOT IN", "UNCLASSIFIED", "IN OR UNCLASSIFIED"),
    "parent": ("=", "IN", "EMPTY", "NOT EMPTY"),
    "created": _DATE_OPERATORS,
    "updated": _DATE_OPERATORS,
}
_NO_VALUE = frozenset({"EMPTY", "NOT EMPTY", "UNCLASSIFIED"})


def parse_stamp(stamp: str) -> datetime:
    """A stored ``created``/``updated`` (ISO 8601 with offset) as an aware UTC datetime."""
    moment = datetime.fromisoformat(stamp)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def parse_search(raw: str | None, now: datetime | None = None) -> list[Predicate]:
    """Predicates for a ``search`` parameter; PimError with Akeneo's message if invalid."""
    if raw is None or raw == "":
        return []
    try:
        search = json.loads(raw)
    except ValueError:
        raise PimError(400, "Search query parameter should be valid JSON.") from None
    if not isinstance(search, dict):
        raise PimError(422, "Search query parameter should be valid JSON.")
    now = now or datetime.now(UTC)
    predicates: list[Predicate] = []
    for prop, conditions in search.items():
        if not isinstance(conditions, list) or not all(isinstance(c, dict) for c in conditions):
            raise _structure(prop)
        for condition in conditions:
            operator = condition.get("operator")
            if not isinstance(operator, str):
                raise _structure(prop)
            if prop not in OPERATORS or operator not in OPERATORS[prop]:
                raise PimError(
                    422,
                    f'Filter on property "{prop}" is not supported or does not support '
                    f'operator "{operator}"',
                )
            if operator not in _NO_VALUE and "value" not in condition:
                raise PimError(422, f'Value is missing for the property "{prop}".')
            predicates.append(_predicate(prop, operator, condition.get("value"), now))
    return predicates


def _structure(prop: str) -> PimError:
    return PimError(
        422,
        f'Structure of filter "{prop}" should respect this structure: '
        f'{{"{prop}":[{{"operator": "my_operator", "value": "my_value"}}]}}',
    )


def _predicate(prop: str, op: str, value: Any, now: datetime) -> Predicate:
    if prop in ("created", "updated"):
        return _date_predicate(prop, op, value, now)
    if prop == "enabled":
        if not isinstance(value, bool):
            raise _expects(prop, "a boolean", value)
        return (
            (lambda p: p.get("enabled") is value)
            if op == "="
            else (lambda p: p.get("enabled") is not value)
        )
    if prop == "identifier":
        return _identifier_predicate(op, value)
    if prop == "parent" and op == "=":
        if not isinstance(value, str):
            raise _expects(prop, "a string", value)
        return lambda p: p.get("parent") == value
    return _code_predicate(prop, op, value)


def _identifier_predicate(op: str, value: Any) -> Predicate:
    if op in ("IN", "NOT IN"):
        codes = _string_list("identifier", value)
        if op == "IN":
            return lambda p: p["identifier"] in codes
        return lambda p: p["identifier"] not in codes
    if not isinstance(value, str):
        raise _expects("identifier", "a string", value)
    return {
        "=": lambda p: p["identifier"] == value,
        "!=": lambda p: p["identifier"] != value,
        "STARTS WITH": lambda p: str(p["identifier"]).startswith(value),
        "CONTAINS": lambda p: value in str(p["identifier"]),
        "DOES NOT CONTAIN": lambda p: value not in str(p["identifier"]),
    }[op]


def _code_predicate(prop: str, op: str, value: Any) -> Predicate:
    def codes_of(p: dict[str, Any]) -> set[str]:
        held = p.get(prop)
        if held is None:
            return set()
        return {held} if isinstance(held, str) else set(held)

    if op in ("EMPTY", "UNCLASSIFIED"):
        return lambda p: not codes_of(p)
    if op == "NOT EMPTY":
        return lambda p: bool(codes_of(p))
    wanted = _string_list(prop, value)
    if op == "IN":
        return lambda p: bool(codes_of(p) & wanted)
    if op == "IN OR UNCLASSIFIED":
        return lambda p: not codes_of(p) or bool(codes_of(p) & wanted)
    return lambda p: not codes_of(p) & wanted  # NOT IN


def _date_predicate(prop: str, op: str, value: Any, now: datetime) -> Predicate:
    def stamp(p: dict[str, Any]) -> datetime:
        return parse_stamp(str(p[prop]))

    if op == "SINCE LAST N DAYS":
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise _expects(prop, "an integer", value)
        since = now - timedelta(days=value)
        return lambda p: stamp(p) >= since
    if op in ("BETWEEN", "NOT BETWEEN"):
        if not isinstance(value, list) or len(value) != 2:
            raise _expects(prop, "an array with 2 dates", value)
        low, high = (_date(prop, v) for v in value)
        if op == "BETWEEN":
            return lambda p: low <= stamp(p) <= high
        return lambda p: not low <= stamp(p) <= high
    moment = _date(prop, value)
    return {
        "=": lambda p: stamp(p) == moment,
        "!=": lambda p: stamp(p) != moment,
        "<": lambda p: stamp(p) < moment,
        ">": lambda p: stamp(p) > moment,
    }[op]


def _date(prop: str, value: Any) -> datetime:
    if isinstance(value, str):
        try:
            return datetime.strptime(value, DATE_FORMAT).replace(tzinfo=UTC)
        except ValueError:
            pass
    raise PimError(
        422,
        f'Property "{prop}" expects a string with the format "yyyy-mm-dd H:i:s" as data, '
        f'"{value}" given.',
    )


def _string_list(prop: str, value: Any) -> set[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _expects(prop, "an array", value)
    return set(value)


def _expects(prop: str, what: str, value: Any) -> PimError:
    return PimError(422, f'Property "{prop}" expects {what} as data, "{json.dumps(value)}" given.')
