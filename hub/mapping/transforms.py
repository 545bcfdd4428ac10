"""Value transforms named in mappings: each is a pair (system -> canonical, canonical ->
system), so the same declaration drives reads and writes and a round trip is lossless for
normalised values. Failures raise :class:`TransformError` naming the rule broken; the sync
engine turns that into a quarantine entry naming the record and field."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from hub import yamlio
from hub.currency import exponent
from hub.model import DunningOutcome
from hub.money import PrecisionError, minor_units


class TransformError(ValueError):
    """A value a transform cannot convert (unknown code, bad date, inexact amount)."""


@dataclass(frozen=True)
class Context:
    """What a transform may need beyond the value: the record's currency, the code list,
    the datetime format the system speaks."""

    currency: str | None = None
    codes: dict[str, str] | None = None
    datetime_format: str = "iso"


Fn = Callable[[Any, Context], Any]


#: each of _none_safe's transforms -> the transform it makes None-safe
_NONE_SAFE_ORIGINALS: dict[Fn, Fn] = {}


def _none_safe(fn: Fn) -> Fn:
    """``fn``, passing None through. The original stays reachable
    (:func:`none_safe_original`): a mapper converting a field by this one transform tests
    for None itself and calls it directly, a call less per field of every record read."""

    def wrapped(value: Any, ctx: Context) -> Any:
        return None if value is None else fn(value, ctx)

    _NONE_SAFE_ORIGINALS[wrapped] = fn
    return wrapped


def none_safe_original(fn: Fn) -> Fn | None:
    """The transform ``fn`` makes None-safe (``fn`` is one of :func:`_none_safe`'s), else
    None."""
    return _NONE_SAFE_ORIGINALS.get(fn)


def _text(value: Any) -> str:
    """Text transforms take text only: a number or an object where a name belongs is a
    malformed record, not something to pass through to the golden record."""
    if not isinstance(value, str):
        raise TransformError(f"expected text, got {type(value).__name__} {value!r:.60}")
    return value


def _trim(value: Any, _: Context) -> Any:
    return _text(value).strip()


def _upper(value: Any, _: Context) -> Any:
    return _text(value).upper()


def _lower(value: Any, _: Context) -> Any:
    return _text(value).lower()


def _code_in(value: Any, ctx: Context) -> Any:
    assert ctx.codes is not None
    reverse = {native: canonical for canonical, native in ctx.codes.items()}
    if str(value) not in reverse:
        raise TransformError(f"unknown code {value!r}; known: {sorted(reverse)}")
    return reverse[str(value)]


def _code_out(value: Any, ctx: Context) -> Any:
    assert ctx.codes is not None
    if str(value) not in ctx.codes:
        raise TransformError(f"no system code for {value!r}; known: {sorted(ctx.codes)}")
    return ctx.codes[str(value)]


def _money_in(value: Any, ctx: Context) -> int:
    if ctx.currency is None:
        raise TransformError("amount without a currency")
    if isinstance(value, bool):
        raise TransformError(f"not an amount: {value!r}")
    if isinstance(value, float):
        value = repr(value)  # shortest repr: 12.3 -> '12.3', never 12.2999...
    try:
        return minor_units(Decimal(str(value)), ctx.currency)
    except (PrecisionError, InvalidOperation, ValueError) as exc:
        raise TransformError(str(exc) or f"not an amount: {value!r}") from None


def _money_out(value: Any, ctx: Context) -> str:
    if ctx.currency is None:
        raise TransformError("amount without a currency")
    if not isinstance(value, int) or isinstance(value, bool):
        raise TransformError(f"minor units must be an integer, got {value!r}")
    exp = exponent(ctx.currency)
    return str(Decimal(value).scaleb(-exp).quantize(Decimal(1).scaleb(-exp)))


def _date_in(value: Any, _: Context) -> str:
    if isinstance(value, datetime):
        return (
            value.astimezone(UTC).date().isoformat() if value.tzinfo else value.date().isoformat()
        )
    if isinstance(value, date):
        return value.isoformat()
    try:
        return date.fromisoformat(str(value)[:10]).isoformat()
    except ValueError:
        raise TransformError(f"not a date: {value!r}") from None


def _date_out(value: Any, _: Context) -> str:
    return date.fromisoformat(str(value)).isoformat()


def _parse_datetime(value: Any) -> datetime:
    if isinstance(value, datetime):
        parsed = value
    else:
        text = str(value)
        if len(text) >= 5 and text[-5] in "+-" and text[-3] != ":":  # +0000 (Salesforce)
            text = f"{text[:-2]}:{text[-2:]}"
        try:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise TransformError(f"not a datetime: {value!r}") from None
    if parsed.tzinfo is None:
        raise TransformError(f"datetime without a timezone: {value!r}")
    return parsed.astimezone(UTC)


def _datetime_in(value: Any, _: Context) -> str:
    return _parse_datetime(value).isoformat()


def _datetime_out(value: Any, ctx: Context) -> str:
    moment = _parse_datetime(value)
    if ctx.datetime_format == "salesforce":
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}+0000"
    if ctx.datetime_format == "akeneo":
        return moment.replace(microsecond=0).isoformat()
    return moment.isoformat()


def _int(value: Any, _: Context) -> int:
    if isinstance(value, bool):
        raise TransformError(f"not an integer: {value!r}")
    if isinstance(value, int):
        return value
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise TransformError(f"not an integer: {value!r}") from None
    if number != number.to_integral_value():
        raise TransformError(f"not a whole number: {value!r}")
    return int(number)


_TRUE = {"true", "1", "yes", "y", "x"}
_FALSE = {"false", "0", "no", "n", ""}


def _bool(value: Any, _: Context) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise TransformError(f"not a boolean: {value!r}")


def _str(value: Any, _: Context) -> str:
    return str(value)


def _json_in(value: Any, _: Context) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            raise TransformError(f"not JSON: {value[:40]!r}") from None
    return value


def _json_out(value: Any, _: Context) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _akeneo_in(value: Any, _: Context) -> Any:
    """Akeneo product values: ``[{"locale": null, "scope": null, "data": ...}]``."""
    if isinstance(value, list):
        for entry in value:
            if (
                isinstance(entry, dict)
                and entry.get("locale") is None
                and entry.get("scope") is None
            ):
                return entry.get("data")
        return None
    return value


def _akeneo_out(value: Any, _: Context) -> list[dict[str, Any]]:
    return [{"locale": None, "scope": None, "data": value}]


#: One line of a dunning history as text: ``2026-03-05 stage 2 retried``; an event whose
#: outcome is not known yet has none (``2026-03-05 stage 2``).
_DUNNING_LINE = re.compile(r"(\d{4}-\d{2}-\d{2}) stage (\d{1,2})(?: ([a-z_]+))?")
_OUTCOMES = frozenset(o.value for o in DunningOutcome)


def _dunning_line(number: int, line: str) -> dict[str, Any]:
    """One event of a dunning history; errors name the line, as a person edits them."""
    match = _DUNNING_LINE.fullmatch(line)
    if match is None:
        raise TransformError(
            f"dunning history line {number}: {line!r:.60} is not 'YYYY-MM-DD stage N [outcome]'"
        )
    day, stage, outcome = match.groups()
    try:
        on = date.fromisoformat(day).isoformat()
    except ValueError:
        raise TransformError(f"dunning history line {number}: not a date: {day!r}") from None
    if outcome is not None and outcome not in _OUTCOMES:
        raise TransformError(
            f"dunning history line {number}: unknown outcome {outcome!r}; "
            f"known: {sorted(_OUTCOMES)}"
        )
    return {"stage": int(stage), "on": on, "outcome": outcome}


def _dunning_in(value: Any, _: Context) -> list[dict[str, Any]]:
    """A dunning history as text (one event per line, oldest first) -> the canonical
    events. No text is no events: a text field Salesforce holds empty reads as null."""
    if value is None:
        return []
    lines = _text(value).splitlines()
    return [_dunning_line(n, line.strip()) for n, line in enumerate(lines, 1) if line.strip()]


def _dunning_event_text(index: int, event: Any) -> str:
    if not isinstance(event, Mapping):
        raise TransformError(f"dunning event {index}: expected an object, got {event!r:.60}")
    stage, on, outcome = event.get("stage"), event.get("on"), event.get("outcome")
    if not isinstance(stage, int) or isinstance(stage, bool):
        raise TransformError(f"dunning event {index}: stage must be an integer, got {stage!r}")
    if on is None:
        raise TransformError(f"dunning event {index}: no day (on)")
    day = _date_in(on, Context())
    if outcome is None:
        return f"{day} stage {stage}"
    text = outcome.value if isinstance(outcome, DunningOutcome) else str(outcome)
    if text not in _OUTCOMES:
        raise TransformError(f"dunning event {index}: unknown outcome {text!r}")
    return f"{day} stage {stage} {text}"


def _dunning_out(value: Any, _: Context) -> str | None:
    """The canonical events -> one line per event, in their order. None for no events:
    Salesforce keeps no empty text (an empty string is stored as null)."""
    if value is None:
        return None
    if not isinstance(value, list | tuple):
        raise TransformError(f"dunning events must be a list, got {type(value).__name__}")
    return "\n".join(_dunning_event_text(i, e) for i, e in enumerate(value, 1)) or None


def _identity(value: Any, _: Context) -> Any:
    return value


#: name -> (system to canonical, canonical to system). Normalising transforms (trim, case)
#: are their own inverse on already-normal values.
REGISTRY: dict[str, tuple[Fn, Fn]] = {
    "trim": (_none_safe(_trim), _none_safe(_trim)),
    "upper": (_none_safe(_upper), _none_safe(_upper)),
    "lower": (_none_safe(_lower), _identity),
    "code": (_none_safe(_code_in), _none_safe(_code_out)),
    "money_decimal": (_none_safe(_money_in), _none_safe(_money_out)),
    "date": (_none_safe(_date_in), _none_safe(_date_out)),
    "datetime": (_none_safe(_datetime_in), _none_safe(_datetime_out)),
    "int": (_none_safe(_int), _none_safe(_int)),
    "bool": (_none_safe(_bool), _none_safe(_bool)),
    "str": (_none_safe(_str), _none_safe(_str)),
    "json": (_none_safe(_json_in), _none_safe(_json_out)),
    "akeneo_value": (_akeneo_in, _none_safe(_akeneo_out)),
    "dunning_history": (_dunning_in, _dunning_out),
}


def load_code_lists(root: Path) -> dict[str, dict[str, str]]:
    """``mappings/codes/<name>.yaml``: canonical code -> system code."""
    lists: dict[str, dict[str, str]] = {}
    for path in sorted((root / "codes").glob("*.yaml")):
        data = yamlio.load(path.read_text()) or {}
        lists[path.stem] = {str(k): str(v) for k, v in data.items()}
    return lists
