"""CloudEvents 1.0 over HTTP: parse an event in structured mode (``application/cloudevents
+json``, the whole event a JSON object) or binary mode (the attributes in ``ce-*`` headers,
the data the body) into one frozen :class:`CloudEvent`.

Errors are :class:`CloudEventError` naming the attribute that is missing or invalid, so a
receiver can answer 400 with it and a sender can fix its event.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any
from urllib.parse import unquote

STRUCTURED_JSON = "application/cloudevents+json"
BATCH_JSON = "application/cloudevents-batch+json"
SPEC_VERSION = "1.0"
#: context attributes the spec requires of every event
REQUIRED = ("id", "source", "specversion", "type")
_KNOWN = frozenset({*REQUIRED, "time", "subject", "datacontenttype", "dataschema"})
_ATTRIBUTE_NAME = re.compile(r"^[a-z0-9]{1,20}$")
#: RFC 3339 date-time, offset required (``Z`` or ``±hh:mm``)
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")


class CloudEventError(ValueError):
    """An event that is not a valid CloudEvent; ``attribute`` names what is wrong."""

    def __init__(self, attribute: str, message: str) -> None:
        super().__init__(f"{attribute}: {message}")
        self.attribute = attribute
        self.message = message


@dataclass(frozen=True)
class CloudEvent:
    id: str
    source: str
    type: str
    specversion: str = SPEC_VERSION
    #: aware UTC, or None when the producer sent no ``time``
    time: datetime | None = None
    subject: str | None = None
    datacontenttype: str | None = None
    dataschema: str | None = None
    #: decoded JSON when the data is JSON, bytes when it is binary, None when absent
    data: Any = None
    extensions: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    def attributes(self) -> dict[str, Any]:
        """The event in structured form (time as RFC 3339), for storing as a payload."""
        out: dict[str, Any] = {
            "specversion": self.specversion,
            "id": self.id,
            "source": self.source,
            "type": self.type,
        }
        if self.time is not None:
            out["time"] = self.time.isoformat().replace("+00:00", "Z")
        for name in ("subject", "datacontenttype", "dataschema"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        out.update(self.extensions)
        if isinstance(self.data, bytes):
            out["data_base64"] = base64.b64encode(self.data).decode()
        elif self.data is not None:
            out["data"] = self.data
        return out


def parse_time(value: Any, attribute: str = "time") -> datetime:
    """An RFC 3339 timestamp (offset required) as an aware UTC datetime."""
    if not isinstance(value, str) or not _RFC3339.match(value.strip()):
        raise CloudEventError(attribute, f"not an RFC 3339 timestamp with an offset: {value!r}")
    text = value.strip().replace("z", "Z").replace("t", "T")
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    try:
        return datetime.fromisoformat(text).astimezone(UTC)
    except ValueError as exc:
        raise CloudEventError(attribute, f"not a valid timestamp: {value!r}") from exc


def _build(attrs: Mapping[str, Any], data: Any) -> CloudEvent:
    for name in REQUIRED:
        value = attrs.get(name)
        if value is None:
            raise CloudEventError(name, "required attribute is missing")
        if not isinstance(value, str) or not value.strip():
            raise CloudEventError(name, "must be a non-empty string")
    if attrs["specversion"] != SPEC_VERSION:
        raise CloudEventError(
            "specversion", f"unsupported version {attrs['specversion']!r} (expected 1.0)"
        )
    for name in ("subject", "datacontenttype", "dataschema"):
        value = attrs.get(name)
        if value is not None and not isinstance(value, str):
            raise CloudEventError(name, "must be a string")
    time = parse_time(attrs["time"]) if attrs.get("time") is not None else None
    extensions: dict[str, str] = {}
    for name, value in attrs.items():
        if name in _KNOWN or name in ("data", "data_base64"):
            continue
        if not _ATTRIBUTE_NAME.match(name):
            raise CloudEventError(name, "attribute names are 1-20 lower-case letters or digits")
        extensions[name] = value if isinstance(value, str) else json.dumps(value)
    return CloudEvent(
        id=attrs["id"],
        source=attrs["source"],
        type=attrs["type"],
        specversion=attrs["specversion"],
        time=time,
        subject=attrs.get("subject"),
        datacontenttype=attrs.get("datacontenttype"),
        dataschema=attrs.get("dataschema"),
        data=data,
        extensions=MappingProxyType(extensions),
    )


def _is_json(content_type: str | None) -> bool:
    if not content_type:
        return True  # the spec's default for structured data, and SAP's for binary
    media = content_type.split(";")[0].strip().lower()
    return media == "application/json" or media.endswith("+json") or media == "text/json"


def from_object(obj: Any) -> CloudEvent:
    """One event in structured JSON form, already decoded."""
    if not isinstance(obj, dict):
        raise CloudEventError("event", "a structured event must be a JSON object")
    if "data" in obj and "data_base64" in obj:
        raise CloudEventError("data", "data and data_base64 are mutually exclusive")
    data: Any = obj.get("data")
    if "data_base64" in obj:
        try:
            data = base64.b64decode(obj["data_base64"], validate=True)
        except (ValueError, TypeError) as exc:
            raise CloudEventError("data_base64", "not valid base64") from exc
    return _build(obj, data)


def parse_structured(body: bytes) -> CloudEvent:
    """An event in structured mode (``application/cloudevents+json``)."""
    try:
        obj = json.loads(body)
    except ValueError as exc:
        raise CloudEventError("event", f"body is not valid JSON: {exc}") from exc
    return from_object(obj)


def parse_batch(body: bytes) -> list[CloudEvent]:
    """Events in batched mode (``application/cloudevents-batch+json``)."""
    try:
        items = json.loads(body)
    except ValueError as exc:
        raise CloudEventError("event", f"body is not valid JSON: {exc}") from exc
    if not isinstance(items, list):
        raise CloudEventError("event", "a batch must be a JSON array of events")
    return [from_object(item) for item in items]


def parse_binary(headers: Mapping[str, str], body: bytes) -> CloudEvent:
    """An event in binary mode: ``ce-<attribute>`` headers (values percent-decoded, as the
    HTTP binding says), ``Content-Type`` the datacontenttype, the body the data."""
    attrs: dict[str, Any] = {}
    content_type: str | None = None
    for name, value in headers.items():
        lower = name.lower()
        if lower.startswith("ce-"):
            attrs[lower[3:]] = unquote(value)
        elif lower == "content-type":
            content_type = value
    if content_type is not None:
        attrs["datacontenttype"] = content_type
    data: Any = None
    if body:
        if _is_json(content_type):
            try:
                data = json.loads(body)
            except ValueError as exc:
                raise CloudEventError("data", f"body is not valid JSON: {exc}") from exc
        else:
            data = bytes(body)
    return _build(attrs, data)


def parse_http(headers: Mapping[str, str], body: bytes) -> list[CloudEvent]:
    """The events of one HTTP request, in whichever mode it uses: structured or batched
    when its content type says so, binary otherwise."""
    content_type = next((v for k, v in headers.items() if k.lower() == "content-type"), "")
    media = content_type.split(";")[0].strip().lower()
    if media == STRUCTURED_JSON:
        return [parse_structured(body)]
    if media == BATCH_JSON:
        return parse_batch(body)
    if not any(k.lower().startswith("ce-") for k in headers):
        raise CloudEventError(
            "specversion",
            f"neither a structured event ({STRUCTURED_JSON}) nor ce-* headers (binary mode)",
        )
    return [parse_binary(headers, body)]
