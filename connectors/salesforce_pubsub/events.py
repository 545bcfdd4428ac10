"""Change Data Capture events of the Pub/Sub API, decoded: Avro payloads read with the
schema ``GetSchema`` returns (cached by schema id), the ``ChangeEventHeader`` bitmaps
turned into field names, and each event presented as one :class:`ChangeEvent`.

The bitmap fields (``changedFields``, ``nulledFields``, ``diffFields``) arrive as Salesforce
documents them in "Event Deserialization Considerations" (Pub/Sub API guide): an array of
strings whose first element, when it starts with ``0x``, is a hexadecimal bitmap over the
positions of the event schema's top-level fields (bit *n*, counted from the least
significant bit, set = the field at position *n* of the Avro record), and whose other
elements ``"<pos>-<hex>"`` are bitmaps over the fields of the compound field (an address, a
name) at top-level position ``pos``, giving ``BillingAddress.City``."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import fastavro

#: The header record every change event carries first.
HEADER = "ChangeEventHeader"
#: Change types of the header: the four record operations, the gap events Salesforce sends
#: when it could not build a full event (the record must be read back by key) and the
#: overflow event for a transaction too large for individual events (the object's window
#: must be read back).
CHANGE_TYPES = frozenset(
    {
        "CREATE",
        "UPDATE",
        "DELETE",
        "UNDELETE",
        "GAP_CREATE",
        "GAP_UPDATE",
        "GAP_DELETE",
        "GAP_UNDELETE",
        "GAP_OVERFLOW",
    }
)


class EventDecodeError(ValueError):
    """A payload or a header field that does not agree with its schema."""


# -- bitmaps ---------------------------------------------------------------------------------
def _bit_positions(hex_bitmap: str) -> list[int]:
    """Positions of the set bits of ``0x...`` (or bare hex), least significant bit = 0."""
    text = hex_bitmap.strip()
    if text[:2].lower() == "0x":
        text = text[2:]
    if not text:
        return []
    try:
        value = int(text, 16)
    except ValueError:
        raise EventDecodeError(f"bitmap {hex_bitmap!r} is not hexadecimal") from None
    return [n for n in range(value.bit_length()) if value >> n & 1]


def _field_at(fields: Sequence[Mapping[str, Any]], position: int, bitmap: str) -> Mapping[str, Any]:
    if position >= len(fields):
        raise EventDecodeError(
            f"bitmap {bitmap!r} names field position {position}, but the schema has "
            f"{len(fields)} fields: the payload's schema id does not match the schema used"
        )
    return fields[position]


def named_records(schema: Any, namespace: str = "") -> dict[str, Mapping[str, Any]]:
    """Every record type defined in ``schema`` by full and short name: a schema defines a
    record once and refers to it by name afterwards (``BillingAddress`` defines
    ``Address``, ``ShippingAddress`` names ``com.sforce.eventbus.Address``)."""
    found: dict[str, Mapping[str, Any]] = {}
    if isinstance(schema, list):
        for member in schema:
            found.update(named_records(member, namespace))
    elif isinstance(schema, Mapping):
        kind = schema.get("type")
        if kind == "record":
            ns = schema.get("namespace", namespace)
            name = str(schema["name"])
            found[name] = schema
            found[name if "." in name else f"{ns}.{name}"] = schema
            for f in schema.get("fields", ()):
                found.update(named_records(f["type"], ns))
        elif kind in ("array", "map"):
            found.update(named_records(schema.get("items", schema.get("values")), namespace))
        elif isinstance(kind, Mapping | list):
            found.update(named_records(kind, namespace))
    return found


def record_of(
    avro_type: Any, named: Mapping[str, Mapping[str, Any]] | None = None
) -> Mapping[str, Any] | None:
    """The record schema of a field type (``{"type": "record"}``, a name defined earlier
    in the schema, or a union holding one, as Salesforce's optional compound fields are
    ``["null", record]``), else None."""
    if isinstance(avro_type, str):
        return (named or {}).get(avro_type)
    if isinstance(avro_type, Mapping):
        if avro_type.get("type") == "record":
            return avro_type
        return record_of(avro_type.get("type"), named) if avro_type.get("type") else None
    if isinstance(avro_type, list):
        for member in avro_type:
            found = record_of(member, named)
            if found is not None:
                return found
    return None


def decode_bitmap(schema: Mapping[str, Any], bitmap: Sequence[str]) -> tuple[str, ...]:
    """Field names a header bitmap field stands for, in schema order: top-level names
    (``Name``), then compound components as ``<field>.<component>`` (``BillingAddress.City``)."""
    fields: Sequence[Mapping[str, Any]] = schema["fields"]
    named = named_records(schema)
    names: list[str] = []
    for entry in bitmap:
        if not entry:
            continue
        parent, dash, nested = entry.partition("-")
        if not dash:
            names += [_field_at(fields, n, entry)["name"] for n in _bit_positions(entry)]
            continue
        try:
            position = int(parent)
        except ValueError:
            raise EventDecodeError(
                f"bitmap {entry!r}: {parent!r} is not a field position"
            ) from None
        compound = _field_at(fields, position, entry)
        record = record_of(compound["type"], named)
        if record is None:
            raise EventDecodeError(
                f"bitmap {entry!r} addresses {compound['name']}, which is not a compound field"
            )
        components = record["fields"]
        names += [
            f"{compound['name']}.{_field_at(components, n, entry)['name']}"
            for n in _bit_positions(nested)
        ]
    return tuple(names)


# -- schemas ---------------------------------------------------------------------------------
class SchemaCache:
    """Parsed Avro schemas by schema id; ``fetch(schema_id) -> schema JSON`` (``GetSchema``)
    is called once per id. A schema id names one immutable schema, so nothing expires."""

    def __init__(self, fetch: Callable[[str], str]) -> None:
        self._fetch = fetch
        self._schemas: dict[str, tuple[dict[str, Any], Any]] = {}
        self.fetches = 0

    def get(self, schema_id: str) -> tuple[dict[str, Any], Any]:
        """(schema as JSON, fastavro's parsed schema)."""
        cached = self._schemas.get(schema_id)
        if cached is None:
            self.fetches += 1
            raw = json.loads(self._fetch(schema_id))
            cached = (raw, fastavro.parse_schema(raw))
            self._schemas[schema_id] = cached
        return cached


def decode_payload(parsed_schema: Any, payload: bytes) -> dict[str, Any]:
    """One Avro datum (Pub/Sub API payloads carry no container header)."""
    try:
        record = fastavro.schemaless_reader(io.BytesIO(payload), parsed_schema)
    except Exception as exc:  # fastavro raises whatever its readers meet
        raise EventDecodeError(f"payload does not decode with its schema: {exc}") from None
    if not isinstance(record, dict):
        raise EventDecodeError("payload is not an Avro record")
    return record


# -- the event -------------------------------------------------------------------------------
@dataclass(frozen=True)
class ChangeEvent:
    """One change event as the hub reads it. ``values`` are the payload's fields other than
    the header, as Avro gives them (compound fields as dicts), only those with a value;
    fields the change set to null are listed in ``nulled_fields``. ``record_ids`` has
    several ids when one transaction made the same change to several records.
    ``change_type`` keeps gap (``GAP_*``) and ``GAP_OVERFLOW`` types as they are: their
    values are empty and the hub reads the records (or the object's window) back."""

    channel: str
    replay_id: bytes
    event_id: str
    entity: str
    change_type: str
    record_ids: tuple[str, ...]
    changed_fields: tuple[str, ...]
    nulled_fields: tuple[str, ...]
    diff_fields: tuple[str, ...]
    values: dict[str, Any] = field(hash=False, compare=True)
    commit_timestamp: datetime
    commit_user: str
    change_origin: str
    transaction_key: str
    sequence_number: int
    schema_id: str = ""

    @property
    def is_gap(self) -> bool:
        """A gap or overflow event: no field values, read the records back."""
        return self.change_type.startswith("GAP_")

    @property
    def is_overflow(self) -> bool:
        return self.change_type == "GAP_OVERFLOW"

    def flat_values(self) -> dict[str, Any]:
        """``values`` with compound fields spread into the REST API's field names."""
        return flatten_compound(self.values)

    @property
    def replay_text(self) -> str:
        return replay_id_text(self.replay_id)


def replay_id_text(replay_id: bytes) -> str:
    """A replay id as text (hex) for a store column; :func:`replay_id_bytes` inverts it."""
    return replay_id.hex()


def replay_id_bytes(text: str) -> bytes:
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise ValueError(f"stored replay id {text!r} is not the hex text of a replay id") from None


#: Components of a compound Name field keep their own names in REST (FirstName, LastName).
_NAME_COMPOUND = "Name"


def flatten_compound(values: Mapping[str, Any]) -> dict[str, Any]:
    """REST field names for compound values: ``BillingAddress: {City}`` -> ``BillingCity``,
    a custom address ``Site__c: {City__s}`` -> ``Site__City__s``, ``Name: {FirstName}`` ->
    ``FirstName``. Scalars pass through."""
    out: dict[str, Any] = {}
    for name, value in values.items():
        if not isinstance(value, Mapping):
            out[name] = value
            continue
        if name == _NAME_COMPOUND:
            prefix = ""
        elif name.endswith("__c"):
            prefix = name[: -len("c")]  # Site__c -> Site__ (components end in __s)
        elif name.endswith("Address"):
            prefix = name[: -len("Address")]
        else:
            prefix = name
        for component, inner in value.items():
            out[f"{prefix}{component}"] = inner
    return out


def _aware(millis: Any) -> datetime:
    if isinstance(millis, datetime):  # a schema with logicalType timestamp-millis
        return millis.astimezone(UTC) if millis.tzinfo else millis.replace(tzinfo=UTC)
    return datetime.fromtimestamp(int(millis) / 1000, tz=UTC)


def _without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    return value


def _enum_text(value: Any) -> str:
    return str(value) if value is not None else ""


def to_change_event(
    channel: str,
    replay_id: bytes,
    event_id: str,
    schema_id: str,
    schema: Mapping[str, Any],
    record: Mapping[str, Any],
) -> ChangeEvent:
    """A decoded CDC payload as a :class:`ChangeEvent`."""
    header = record.get(HEADER)
    if not isinstance(header, Mapping):
        raise EventDecodeError(
            f"{channel}: event {event_id} has no {HEADER}; is this a change event channel?"
        )
    change_type = _enum_text(header.get("changeType"))
    if change_type not in CHANGE_TYPES:
        raise EventDecodeError(f"{channel}: event {event_id} has change type {change_type!r}")

    def bitmap(name: str) -> tuple[str, ...]:
        return decode_bitmap(schema, header.get(name) or [])

    values = {
        name: _without_nulls(value)
        for name, value in record.items()
        if name != HEADER and value is not None
    }
    return ChangeEvent(
        channel=channel,
        replay_id=replay_id,
        event_id=event_id,
        entity=str(header.get("entityName") or ""),
        change_type=change_type,
        record_ids=tuple(header.get("recordIds") or ()),
        changed_fields=bitmap("changedFields"),
        nulled_fields=bitmap("nulledFields"),
        diff_fields=bitmap("diffFields"),
        values=values,
        commit_timestamp=_aware(header.get("commitTimestamp") or 0),
        commit_user=str(header.get("commitUser") or ""),
        change_origin=str(header.get("changeOrigin") or ""),
        transaction_key=str(header.get("transactionKey") or ""),
        sequence_number=int(header.get("sequenceNumber") or 0),
        schema_id=schema_id,
    )


# -- channels --------------------------------------------------------------------------------
def channel_for(object_name: str) -> str:
    """The change event channel of an object: ``Account`` -> ``/data/AccountChangeEvent``,
    a custom object ``Foo__c`` -> ``/data/Foo__ChangeEvent``."""
    name = object_name.strip()
    if not name or "/" in name:
        raise ValueError(f"{object_name!r} is not an object API name")
    if name.endswith("__c"):
        return f"/data/{name[: -len('c')]}ChangeEvent"
    return f"/data/{name}ChangeEvent"


def channels_for(object_names: Iterable[str]) -> list[str]:
    """Channels of several objects, each once, in the order given."""
    return list(dict.fromkeys(channel_for(name) for name in object_names))
