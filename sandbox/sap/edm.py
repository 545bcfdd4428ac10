"""The schema vocabulary (entity sets, properties, navigations) and Edm value conversion.

Services are declared as data (see :mod:`sandbox.sap.services`); everything else - the
EDMX document, validation, JSON rendering, $filter typing - is derived from these objects so
the metadata a client loads can never disagree with what the handlers accept.

Records are kept in a *storage form* that sorts and compares cheaply: Edm.DateTime and
Edm.DateTimeOffset as integer milliseconds since the epoch (UTC), Edm.Decimal as a string
with the property's scale, everything else as its JSON value.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field, replace
from decimal import Decimal, InvalidOperation
from typing import Any

UTC = dt.UTC
EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)

_DATE_JSON = re.compile(r"^/Date\((-?\d+)([+-]\d{4})?\)/$")
_TIME = re.compile(r"^PT(\d{1,2})H(\d{1,2})M(\d{1,2})(?:\.\d+)?S$")
_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


@dataclass(frozen=True)
class Prop:
    """One property. ``readonly`` marks system-maintained fields (ignored on input);
    ``codes`` names a code list in the settings the value must belong to."""

    name: str
    type: str = "Edm.String"
    max_length: int | None = None
    precision: int | None = None
    scale: int | None = None
    nullable: bool = True
    label: str = ""
    required: bool = False
    codes: str | None = None
    readonly: bool = False
    display_format: str | None = None
    ref: tuple[str, str, str] | None = None  # (service, entity set, key property)
    #: held in S/4 through the ALPHA conversion exit (a number range's key): a numeric
    #: value is stored zero-padded to ``max_length``, so it sorts as a number
    alpha: bool = False

    @property
    def is_date(self) -> bool:
        return self.type == "Edm.DateTime" and self.display_format == "Date"


@dataclass(frozen=True)
class Nav:
    """A navigation property: ``on`` pairs this entity's properties with the target's."""

    name: str
    target: str
    many: bool
    on: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Numbering:
    """How the server assigns a key the client left empty: a number range for headers
    (``start``, zero-padded to ``width``) or item numbers stepping by ``step`` per parent."""

    field: str
    width: int
    start: int = 1
    step: int = 1
    per_parent: bool = False
    pad: bool = True


@dataclass
class EntitySet:
    name: str
    keys: tuple[str, ...]
    props: tuple[Prop, ...]
    navs: tuple[Nav, ...] = ()
    label: str = ""
    creatable: bool = True
    updatable: bool = True
    deletable: bool = True
    numbering: Numbering | None = None
    parent: str | None = None  # entity set whose change stamp a change here bumps
    parent_on: tuple[tuple[str, str], ...] = ()  # (this prop, parent prop)
    stamped: bool = True  # a top-level business object (its own number range, stamps)
    #: the business object this entity is a role of (A_Customer: its business partner):
    #: a change here re-stamps the owner found by ``owner_on`` (this prop, owner prop),
    #: and a create with no owner creates it (as S/4's customer-vendor integration does)
    owner: str | None = None
    owner_on: tuple[tuple[str, str], ...] = ()
    #: read-only fields an item takes from its ``parent`` when it is created (a contract
    #: item's document currency is its contract's)
    from_parent: tuple[str, ...] = ()
    prop_map: dict[str, Prop] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.numbering is not None:  # the number range's key: ALPHA, as in S/4
            self.props = tuple(
                replace(p, alpha=True) if p.name == self.numbering.field else p for p in self.props
            )
        self.prop_map = {p.name: p for p in self.props}

    @property
    def type_name(self) -> str:
        return f"{self.name}Type"

    def nav(self, name: str) -> Nav | None:
        return next((n for n in self.navs if n.name == name), None)


@dataclass
class Service:
    name: str
    component: str
    sets: dict[str, EntitySet]

    @property
    def namespace(self) -> str:
        return self.name

    @property
    def container(self) -> str:
        return f"{self.name.removesuffix('_SRV')}_Entities"


# --------------------------------------------------------------------------- conversion


class EdmValueError(ValueError):
    """A value that does not fit its property (becomes an SAP 400)."""


def now_ms() -> int:
    return int(dt.datetime.now(UTC).timestamp() * 1000)


def ms_to_datetime(ms: int) -> dt.datetime:
    return EPOCH + dt.timedelta(milliseconds=ms)


def datetime_to_ms(value: dt.datetime) -> int:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return int((value - EPOCH) / dt.timedelta(milliseconds=1))


def parse_iso(text: str) -> int:
    """ISO 8601 (with or without offset; no offset means UTC) to epoch ms."""
    norm = text.strip().replace("Z", "+00:00").replace("z", "+00:00")
    if "." in norm:  # fromisoformat wants 3 or 6 fractional digits on older rules
        head, rest = norm.split(".", 1)
        digits = re.match(r"\d+", rest)
        frac = digits.group(0) if digits else ""
        norm = f"{head}.{frac[:6].ljust(6, '0')}{rest[len(frac) :]}"
    try:
        parsed = dt.datetime.fromisoformat(norm)
    except ValueError as exc:
        raise EdmValueError(f"invalid date/time value '{text}'") from exc
    return datetime_to_ms(parsed)


def _date_ms(value: Any, prop: Prop) -> int:
    if isinstance(value, dt.datetime):
        ms = datetime_to_ms(value)
    elif isinstance(value, dt.date):
        ms = datetime_to_ms(dt.datetime(value.year, value.month, value.day, tzinfo=UTC))
    elif isinstance(value, bool):
        raise EdmValueError(f"Property '{prop.name}' has an invalid date/time value")
    elif isinstance(value, int):
        ms = value
    elif isinstance(value, str):
        match = _DATE_JSON.match(value)
        ms = int(match.group(1)) if match else parse_iso(value)
    else:
        raise EdmValueError(f"Property '{prop.name}' has an invalid date/time value")
    if prop.is_date:
        ms -= ms % 86_400_000
    return ms


def format_decimal(value: Decimal, prop: Prop) -> str:
    scale = prop.scale or 0
    quant = Decimal(1).scaleb(-scale)
    try:
        fixed = value.quantize(quant)
    except InvalidOperation as exc:
        raise EdmValueError(f"Property '{prop.name}' value {value} out of range") from exc
    if fixed != value:
        raise EdmValueError(
            f"Property '{prop.name}' allows {scale} decimal places, value {value} has more"
        )
    precision = prop.precision or 31
    if len(fixed.as_tuple().digits) > precision and fixed != 0:
        raise EdmValueError(f"Property '{prop.name}' value {value} exceeds {precision} digits")
    return f"{fixed:f}"


def to_storage(prop: Prop, value: Any) -> Any:
    """Convert an incoming (JSON or Python) value to storage form, validating its type."""
    if value is None:
        if not prop.nullable:
            raise EdmValueError(f"Property '{prop.name}' must not be null")
        return None
    typ = prop.type
    if typ == "Edm.String":
        if not isinstance(value, str):
            raise EdmValueError(f"Property '{prop.name}' expects a string value")
        if prop.max_length is not None and len(value) > prop.max_length:
            raise EdmValueError(
                f"Value '{value}' of property '{prop.name}' exceeds maximum length "
                f"{prop.max_length}"
            )
        return value
    if typ == "Edm.Decimal":
        if isinstance(value, bool) or not isinstance(value, str | int | float | Decimal):
            raise EdmValueError(f"Property '{prop.name}' expects a decimal value")
        text = str(value).strip().removesuffix("M").removesuffix("m")
        try:
            number = Decimal(text)
        except InvalidOperation as exc:
            raise EdmValueError(
                f"Value '{value}' of property '{prop.name}' is not a valid decimal"
            ) from exc
        if not number.is_finite():
            raise EdmValueError(f"Value '{value}' of property '{prop.name}' is not finite")
        if prop.display_format == "NonNegative" and number < 0:
            raise EdmValueError(f"Property '{prop.name}' must not be negative")
        return format_decimal(number, prop)
    if typ in ("Edm.DateTime", "Edm.DateTimeOffset"):
        return _date_ms(value, prop)
    if typ == "Edm.Boolean":
        if not isinstance(value, bool):
            raise EdmValueError(f"Property '{prop.name}' expects true or false")
        return value
    if typ in ("Edm.Int16", "Edm.Int32", "Edm.Int64", "Edm.Byte", "Edm.SByte"):
        if isinstance(value, bool):
            raise EdmValueError(f"Property '{prop.name}' expects an integer")
        try:
            return int(str(value).removesuffix("L"))
        except ValueError as exc:
            raise EdmValueError(f"Property '{prop.name}' expects an integer") from exc
    if typ in ("Edm.Double", "Edm.Single"):
        try:
            return float(str(value).rstrip("dDfF"))
        except ValueError as exc:
            raise EdmValueError(f"Property '{prop.name}' expects a number") from exc
    if typ == "Edm.Time":
        if isinstance(value, dt.time):
            return f"PT{value.hour:02d}H{value.minute:02d}M{value.second:02d}S"
        if not isinstance(value, str) or not _TIME.match(value):
            raise EdmValueError(f"Property '{prop.name}' expects a time like PT12H00M00S")
        h, m, s = (int(x) for x in _TIME.match(value).groups())  # type: ignore[union-attr]
        return f"PT{h:02d}H{m:02d}M{s:02d}S"
    if typ == "Edm.Guid":
        if not isinstance(value, str) or not _GUID.match(value):
            raise EdmValueError(f"Property '{prop.name}' expects a GUID")
        return value.lower()
    return value


def initial_value(prop: Prop) -> Any:
    """ABAP initial values: S/4 returns '' and 0 for empty fields, null only for dates."""
    typ = prop.type
    if typ == "Edm.String":
        return ""
    if typ == "Edm.Decimal":
        return format_decimal(Decimal(0), prop)
    if typ == "Edm.Boolean":
        return False
    if typ in ("Edm.Int16", "Edm.Int32", "Edm.Int64", "Edm.Byte", "Edm.SByte"):
        return 0
    if typ == "Edm.Time":
        return "PT00H00M00S"
    return None


def to_json(prop: Prop, value: Any) -> Any:
    """Storage form to OData v2 JSON (verbose) form."""
    if value is None:
        return None
    typ = prop.type
    if typ == "Edm.DateTime":
        return f"/Date({value})/"
    if typ == "Edm.DateTimeOffset":
        return f"/Date({value}+0000)/"
    if typ == "Edm.Int64":
        return str(value)
    return value


def typed(prop: Prop, value: Any) -> Any:
    """Storage form to the Python value $filter and $orderby compare."""
    if value is None:
        return None
    if prop.type == "Edm.Decimal":
        return Decimal(value)
    return value


def order_value(prop: Prop, value: Any) -> Any:
    """The value ``$orderby`` sorts on: S/4 sorts the internal form, where an ALPHA
    field's numeric value is zero-padded (``999999`` before ``1000000``)."""
    value = typed(prop, value)
    if prop.alpha and isinstance(value, str) and value.isdigit():
        return value.zfill(prop.max_length or 0)
    return value


def to_key_literal(prop: Prop, value: Any) -> str:
    """A key value as it appears in an entity URI, e.g. ``'1000123'``."""
    if prop.type == "Edm.String":
        return "'" + str(value).replace("'", "''") + "'"
    if prop.type == "Edm.Guid":
        return f"guid'{value}'"
    if prop.type == "Edm.DateTime":
        return "datetime'" + ms_to_datetime(value).strftime("%Y-%m-%dT%H:%M:%S") + "'"
    return str(value)


def etag_for(stamp: int) -> str:
    """Weak ETag in the shape S/4 derives from a change timestamp."""
    when = ms_to_datetime(stamp)
    text = when.strftime("%Y-%m-%dT%H%%3A%M%%3A%S.") + f"{when.microsecond // 1000:03d}0000Z"
    return f"W/\"datetimeoffset'{text}'\""
