"""Field values: coercion of what clients send (JSON or Bulk CSV) into the stored form,
per-field rules, and the typed forms SOQL compares and sorts.

Stored forms: text as ``str``, numbers as ``float`` (``int`` for integer fields), booleans
as ``bool``, dates ``YYYY-MM-DD`` and date-times ``YYYY-MM-DDTHH:MM:SS.sss+0000`` - the
strings the REST API returns.
"""

from __future__ import annotations

import datetime as dt
import re
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from sandbox.salesforce.errors import RecordError
from sandbox.salesforce.schema import Field

TEXT_TYPES = frozenset({"string", "textarea", "email", "phone", "url", "picklist"})
ID_TYPES = frozenset({"id", "reference"})
NUMBER_TYPES = frozenset({"currency", "double", "percent", "int"})
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_DATETIME = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?"
    r"(Z|[+-]\d{2}:?\d{2})?$"
)


class Invalid(Exception):
    def __init__(self, error: RecordError) -> None:
        super().__init__(error.message)
        self.error = error


def format_datetime(moment: dt.datetime) -> str:
    moment = moment.astimezone(dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}+0000"


def parse_datetime(text: str) -> dt.datetime | None:
    match = _DATETIME.match(text.strip())
    if not match:
        return None
    year, month, day, hour, minute, second, frac, zone = match.groups()
    try:
        micro = int((frac or "0").ljust(6, "0")[:6])
        tz = dt.UTC
        if zone and zone != "Z":
            sign = -1 if zone[0] == "-" else 1
            digits = zone[1:].replace(":", "")
            offset = dt.timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
            tz = dt.timezone(sign * offset)
        return dt.datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second or 0), micro,
            tzinfo=tz,
        ).astimezone(dt.UTC)  # fmt: skip
    except ValueError:
        return None


def parse_date(text: str) -> dt.date | None:
    try:
        return dt.date.fromisoformat(text.strip()[:10]) if len(text.strip()) == 10 else None
    except ValueError:
        return None


def _wrong_type(f: Field, raw: Any) -> Invalid:
    return Invalid(
        RecordError(
            "INVALID_TYPE_ON_FIELD_IN_RECORD",
            f"{f.display_label}: value not of required type: {raw}",
            [f.name],
        )
    )


def coerce(f: Field, raw: Any, *, csv: bool = False) -> Any:
    """The stored form of ``raw`` for field ``f``; raises :class:`Invalid`."""
    if raw is None:
        return None
    if csv and isinstance(raw, str) and raw == "":
        return None
    kind = f.type
    if kind in TEXT_TYPES or kind in ID_TYPES:
        if isinstance(raw, bool | dict | list):
            raise _wrong_type(f, raw)
        text = str(raw) if not isinstance(raw, float) else repr(raw)
        if text == "" and kind not in ("string", "textarea"):
            return None
        return text
    if kind == "boolean":
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and raw.strip().lower() in ("true", "1", "yes", "false", "0", "no"):
            return raw.strip().lower() in ("true", "1", "yes")
        raise _wrong_type(f, raw)
    if kind in NUMBER_TYPES:
        if isinstance(raw, bool | dict | list):
            raise _wrong_type(f, raw)
        try:
            number = Decimal(str(raw).strip())
        except InvalidOperation:
            raise _wrong_type(f, raw) from None
        if not number.is_finite():
            raise _wrong_type(f, raw)
        scale = 0 if kind == "int" else f.scale
        number = number.quantize(Decimal(1).scaleb(-scale), rounding=ROUND_HALF_UP)
        digits = f.precision - scale if f.precision else 18
        if abs(number) >= Decimal(10) ** digits:
            raise Invalid(
                RecordError(
                    "NUMBER_OUTSIDE_VALID_RANGE",
                    f"{f.display_label}: value outside of valid range on numeric field: {raw}",
                    [f.name],
                )
            )
        return int(number) if kind == "int" else float(number)
    if kind == "date":
        if not isinstance(raw, str):
            raise _wrong_type(f, raw)
        day = parse_date(raw)
        if day is None:
            moment = parse_datetime(raw)
            if moment is None:
                raise _wrong_type(f, raw)
            day = moment.date()
        return day.isoformat()
    if kind == "datetime":
        if not isinstance(raw, str):
            raise _wrong_type(f, raw)
        moment = parse_datetime(raw)
        if moment is None:
            day = parse_date(raw)
            if day is None:
                raise _wrong_type(f, raw)
            moment = dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)
        return format_datetime(moment)
    raise _wrong_type(f, raw)


def check_rules(f: Field, value: Any) -> None:
    """Length, picklist and format rules of a coerced, non-null value."""
    if value is None:
        return
    text_kind = f.type in ("string", "textarea", "phone", "url", "email")
    if text_kind and f.length and len(value) > f.length:
        raise Invalid(
            RecordError(
                "STRING_TOO_LONG",
                f"{f.display_label}: data value too large: {value} (max length={f.length})",
                [f.name],
            )
        )
    if f.type == "email" and not _EMAIL.match(value):
        raise Invalid(
            RecordError(
                "INVALID_EMAIL_ADDRESS", f"{f.display_label}: invalid email address: {value}",
                [f.name],
            )
        )  # fmt: skip
    if f.picklist is not None and f.picklist.restricted and value not in f.picklist.values:
        raise Invalid(
            RecordError(
                "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                f"{f.display_label}: bad value for restricted picklist field: {value}",
                [f.name],
            )
        )


def to_csv(value: Any, kind: str) -> str:
    """A stored value as Bulk API 2.0 query results write it."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if kind == "datetime" and isinstance(value, str):
        return value[:23] + "Z"
    if isinstance(value, float) and value.is_integer() and kind != "currency":
        return str(int(value)) if abs(value) < 1e15 else repr(value)
    return str(value)


def comparable(value: Any, kind: str) -> Any:
    """The form SOQL compares: case-folded text, dates and datetimes as objects."""
    if value is None:
        return None
    if kind == "datetime" and isinstance(value, str):
        return parse_datetime(value)
    if kind == "date" and isinstance(value, str):
        return parse_date(value)
    if isinstance(value, str):
        return value.casefold()
    return value
