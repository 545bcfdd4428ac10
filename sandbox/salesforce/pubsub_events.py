"""Change Data Capture for the Salesforce emulator: every committed write becomes change
events, kept in the emulator's DocumentStore with opaque, increasing, non-contiguous
replay ids and a retention window; the Pub/Sub API emulator (``pubsub.py``) serves them.

The repository calls :meth:`ChangeEventBus.on_commit` with the records of each commit
(REST, sObject Collections and Bulk API 2.0 all commit through ``UnitOfWork.commit``).
Per record the event is CREATE (new record), UPDATE (changed fields only, others null;
``changedFields`` and ``nulledFields`` bitmaps), DELETE (no fields) or UNDELETE (a
deleted record made live again; all fields). Records of one commit and object whose
event would be identical (same change type, same changed fields, same values - a mass
update of one field, a delete of several records) share one event listing every id in
``recordIds``, as Salesforce merges them. ``changeOrigin`` is
``com/salesforce/api/<rest|bulkapi>/<version>;client=<client>`` (the ``client`` of the
``Sforce-Call-Options`` header, else the connected app's consumer key), ``commitUser`` the
integration user, one ``transactionKey`` per commit with ``sequenceNumber`` 1..n.

Gap and overflow events, expired events and undeletes are injected through the admin
routes (:func:`admin_routes`, under ``/__sandbox/pubsub``).
"""

from __future__ import annotations

import base64
import contextvars
import io
import logging
import random
import threading
import time
import uuid
from bisect import bisect_right
from dataclasses import dataclass
from typing import Any

import fastavro
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from sandbox.faults import ADMIN_PREFIX
from sandbox.salesforce import ids
from sandbox.salesforce.pubsub_schema import (
    CHANGE_TYPES,
    ChannelSchema,
    channels,
    encode_bitmap,
    field_values,
)
from sandbox.salesforce.repository import Change
from sandbox.salesforce.schema import Schema
from sandbox.salesforce.settings import SalesforceSettings
from sandbox.store import DocumentStore

log = logging.getLogger(__name__)

EVENTS = "__pubsub.events"
SCHEMAS = "__pubsub.schemas"
_LAST_REPLAY = "pubsub.last_replay"
_EXPIRED_THROUGH = "pubsub.expired_through"
_COMMIT_NUMBER = "pubsub.commit_number"
OVERFLOW_RECORD_ID = "000000000000000AAA"
ALL_CHANGES = "/data/ChangeEvents"

#: set by the REST/Bulk entry point for the duration of a call: the ``changeOrigin`` of
#: the events its commits publish
change_origin: contextvars.ContextVar[str] = contextvars.ContextVar("change_origin", default="")


def origin(api: str, version: str, client: str) -> str:
    text = f"com/salesforce/api/{api}/{version}"
    return f"{text};client={client}" if client else text


def encode_replay(replay: int) -> bytes:
    return replay.to_bytes(8, "big")


def decode_replay(raw: bytes) -> int | None:
    return int.from_bytes(raw, "big") if len(raw) == 8 else None


@dataclass(frozen=True)
class StoredEvent:
    replay: int
    entity: str
    schema_id: str
    event_id: str
    payload: bytes
    commit_ms: int
    change_type: str
    record_ids: tuple[str, ...]

    def doc(self) -> dict[str, Any]:
        return {
            "replay": self.replay,
            "entity": self.entity,
            "schema_id": self.schema_id,
            "event_id": self.event_id,
            "payload": base64.b64encode(self.payload).decode(),
            "commit_ms": self.commit_ms,
            "change_type": self.change_type,
            "record_ids": list(self.record_ids),
        }

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> StoredEvent:
        return cls(
            int(doc["replay"]),
            str(doc["entity"]),
            str(doc["schema_id"]),
            str(doc["event_id"]),
            base64.b64decode(doc["payload"]),
            int(doc["commit_ms"]),
            str(doc["change_type"]),
            tuple(doc.get("record_ids", ())),
        )


class ChangeEventBus:
    """The org's change events: publishing, retention, and reads for subscribers."""

    def __init__(self, store: DocumentStore, schema: Schema, settings: SalesforceSettings):
        self.store = store
        self.settings = settings
        self.org_schema = schema
        self.channels = channels(schema)
        self.retention_seconds = float(settings.pubsub_retention_seconds)
        self.keepalive_seconds = float(settings.pubsub_keepalive_seconds)
        self.cond = threading.Condition(threading.RLock())
        self._rng = random.Random()
        self._events: list[StoredEvent] = [StoredEvent.from_doc(d) for d in store.iter(EVENTS)]
        self._replays = [e.replay for e in self._events]
        self._last = int(store.get_meta(_LAST_REPLAY, "0") or 0)
        self._expired_through = int(store.get_meta(_EXPIRED_THROUGH, "0") or 0)
        self._commit_number = int(store.get_meta(_COMMIT_NUMBER, "0") or 0)
        self._schemas: dict[str, str] = {d["id"]: d["json"] for d in store.iter(SCHEMAS)}
        new = [
            (c.schema_id, {"id": c.schema_id, "json": c.schema_json})
            for c in self.channels.values()
            if c.schema_id not in self._schemas
        ]
        if new:
            store.put_many(SCHEMAS, new)
            self._schemas.update({k: v["json"] for k, v in new})
        self._parsed = {
            c.schema_id: fastavro.parse_schema(c.schema) for c in self.channels.values()
        }

    # -- topics and schemas ----------------------------------------------------------------
    def channel_for_topic(self, topic: str) -> ChannelSchema | None:
        """The object channel of ``/data/<Event>``; None for unknown topics (and for
        ``/data/ChangeEvents``, which is every channel)."""
        if not topic.startswith("/data/"):
            return None
        name = topic[len("/data/") :]
        return next((c for c in self.channels.values() if c.event_name == name), None)

    def is_topic(self, topic: str) -> bool:
        return topic == ALL_CHANGES or self.channel_for_topic(topic) is not None

    def schema_json(self, schema_id: str) -> str | None:
        return self._schemas.get(schema_id)

    # -- replay ids ------------------------------------------------------------------------
    @property
    def latest_replay(self) -> int:
        with self.cond:
            return self._last

    @property
    def expired_through(self) -> int:
        with self.cond:
            return self._expired_through

    def _next_replay(self) -> int:
        self._last += self._rng.randint(1, 5)
        return self._last

    # -- publishing ------------------------------------------------------------------------
    def on_commit(self, changes: list[Change]) -> None:
        """Called by ``UnitOfWork.commit`` (under the repository lock) after the write."""
        commit_ms = int(time.time() * 1000)
        groups: dict[tuple[Any, ...], tuple[str, dict[str, Any], list[str], list[str]]] = {}
        order: list[tuple[Any, ...]] = []
        for obj, before, after, created in changes:
            channel = self.channels.get(obj.name)
            if channel is None:
                continue
            event = _describe_change(channel, before, after, created)
            if event is None:
                continue
            change_type, values, changed, nulled = event
            same = repr(sorted(values.items()))
            key = (obj.name, change_type, same, tuple(changed), tuple(nulled))
            record_id = str(after["Id"])
            if key not in groups:
                groups[key] = (change_type, values, [record_id], [*changed, "|", *nulled])
                order.append(key)
            else:
                groups[key][2].append(record_id)
        if not order:
            return
        transaction = str(uuid.uuid4())
        with self.cond:
            self._commit_number += 1
            built = []
            for sequence, key in enumerate(order, start=1):
                change_type, values, record_ids, marks = groups[key]
                split = marks.index("|")
                header = {
                    "entityName": key[0],
                    "recordIds": record_ids,
                    "changeType": change_type,
                    "changeOrigin": change_origin.get(),
                    "transactionKey": transaction,
                    "sequenceNumber": sequence,
                    "commitTimestamp": commit_ms,
                    "commitNumber": self._commit_number,
                    "commitUser": self.settings.user_id,
                    "nulledFields": marks[split + 1 :],
                    "diffFields": [],
                    "changedFields": marks[:split],
                }
                built.append((self.channels[key[0]], header, values))
            self._append(built, commit_ms)
            self.store.set_meta(_COMMIT_NUMBER, str(self._commit_number))

    def inject(self, entity: str, change_type: str, record_ids: list[str]) -> StoredEvent:
        """A gap or overflow event (header only, no field values)."""
        channel = self.channels.get(entity)
        if channel is None:
            raise KeyError(entity)
        if change_type not in CHANGE_TYPES:
            raise ValueError(change_type)
        if change_type == "GAP_OVERFLOW":
            record_ids = [OVERFLOW_RECORD_ID]
        commit_ms = int(time.time() * 1000)
        with self.cond:
            self._commit_number += 1
            header = {
                "entityName": channel.entity,
                "recordIds": record_ids,
                "changeType": change_type,
                "changeOrigin": "",
                "transactionKey": str(uuid.uuid4()),
                "sequenceNumber": 1,
                "commitTimestamp": commit_ms,
                "commitNumber": self._commit_number,
                "commitUser": self.settings.user_id,
                "nulledFields": [],
                "diffFields": [],
                "changedFields": [],
            }
            [event] = self._append([(channel, header, {})], commit_ms)
            return event

    def _append(
        self, built: list[tuple[ChannelSchema, dict[str, Any], dict[str, Any]]], commit_ms: int
    ) -> list[StoredEvent]:
        events = []
        for channel, header, values in built:
            record: dict[str, Any] = {"ChangeEventHeader": header}
            record.update({f.name: values.get(f.name) for f in channel.fields})
            out = io.BytesIO()
            fastavro.schemaless_writer(out, self._parsed[channel.schema_id], record)
            events.append(
                StoredEvent(
                    self._next_replay(),
                    channel.entity,
                    channel.schema_id,
                    str(uuid.uuid4()),
                    out.getvalue(),
                    commit_ms,
                    str(header["changeType"]),
                    tuple(header["recordIds"]),
                )
            )
        self.store.put_many(EVENTS, [(f"{e.replay:020d}", e.doc()) for e in events])
        self.store.set_meta(_LAST_REPLAY, str(self._last))
        self._events.extend(events)
        self._replays.extend(e.replay for e in events)
        self._prune(time.time() - self.retention_seconds)
        self.cond.notify_all()
        return events

    # -- retention -------------------------------------------------------------------------
    def expire(self, older_than_seconds: float) -> int:
        """Drop the events committed more than ``older_than_seconds`` ago (as retention
        does); their replay ids (and older) no longer validate."""
        with self.cond:
            return self._prune(time.time() - older_than_seconds)

    def _prune(self, cutoff: float) -> int:
        cutoff_ms = cutoff * 1000
        n = 0
        while n < len(self._events) and self._events[n].commit_ms < cutoff_ms:
            n += 1
        if not n:
            return 0
        gone, self._events, self._replays = self._events[:n], self._events[n:], self._replays[n:]
        for event in gone:
            self.store.delete(EVENTS, f"{event.replay:020d}")
        self._expired_through = max(self._expired_through, gone[-1].replay)
        self.store.set_meta(_EXPIRED_THROUGH, str(self._expired_through))
        return n

    def prune_expired(self) -> None:
        with self.cond:
            self._prune(time.time() - self.retention_seconds)

    # -- reading ---------------------------------------------------------------------------
    def read(self, after: int, topic: str, limit: int) -> tuple[list[StoredEvent], int]:
        """Up to ``limit`` events of ``topic`` after replay ``after``, and the position a
        subscriber may move to: the last event returned, or (nothing more of the topic
        being there) the latest replay id of the org."""
        channel = self.channel_for_topic(topic)
        with self.cond:
            start = bisect_right(self._replays, after)
            out: list[StoredEvent] = []
            for event in self._events[start:]:
                if channel is None or event.entity == channel.entity:
                    if len(out) == limit:
                        return out, out[-1].replay
                    out.append(event)
            return out, max(after, self._last)

    def state(self) -> dict[str, Any]:
        with self.cond:
            return {
                "latest_replay_id": encode_replay(self._last).hex(),
                "expired_through": encode_replay(self._expired_through).hex(),
                "events": len(self._events),
                "retention_seconds": self.retention_seconds,
                "keepalive_seconds": self.keepalive_seconds,
            }


def _describe_change(
    channel: ChannelSchema, before: dict[str, Any] | None, after: dict[str, Any], created: bool
) -> tuple[str, dict[str, Any], list[str], list[str]] | None:
    """(change type, field values, changedFields, nulledFields) of one record's write."""
    now = field_values(channel, after)
    if created or before is None:
        return "CREATE", now, [], []
    if after.get("IsDeleted") and not before.get("IsDeleted"):
        return "DELETE", {}, [], []
    if before.get("IsDeleted") and not after.get("IsDeleted"):
        return "UNDELETE", now, [], []
    if after.get("IsDeleted"):
        return None
    old = field_values(channel, before)
    values: dict[str, Any] = {}
    changed: set[str] = set()
    nulled: set[str] = set()
    for f in channel.fields:
        if f.parts:
            new_parts, old_parts = now[f.name] or {}, old[f.name] or {}
            moved = {}
            for sub, _, _ in f.parts:
                if new_parts.get(sub) != old_parts.get(sub):
                    moved[sub] = new_parts.get(sub)
                    changed.add(f"{f.name}.{sub}")
                    if new_parts.get(sub) is None:
                        nulled.add(f"{f.name}.{sub}")
            if moved:
                values[f.name] = {sub: moved.get(sub) for sub, _, _ in f.parts}
        elif now[f.name] != old[f.name]:
            values[f.name] = now[f.name]
            changed.add(f.name)
            if now[f.name] is None:
                nulled.add(f.name)
    return (
        "UPDATE",
        values,
        encode_bitmap(channel, changed),
        encode_bitmap(channel, nulled),
    )


# -- admin routes --------------------------------------------------------------------------
def admin_routes(bus: ChangeEventBus, undelete: Any) -> list[Route]:
    """``/__sandbox/pubsub``: GET state; POST ``/events`` injects a gap or overflow event
    (``{"object", "changeType", "recordIds"}``); POST ``/expire``
    (``{"older_than_seconds"}``) drops older events; POST ``/settings``
    (``{"keepalive_seconds", "retention_seconds"}``); POST ``/undelete``
    (``{"object", "id"}``) restores a deleted record (an UNDELETE event)."""
    base = f"{ADMIN_PREFIX}/pubsub"

    async def state(_: Request) -> JSONResponse:
        return JSONResponse(bus.state())

    async def inject(request: Request) -> JSONResponse:
        body = await request.json()
        entity = _entity(bus, str(body.get("object", "")))
        change_type = str(body.get("changeType", "GAP_UPDATE"))
        if entity is None:
            return JSONResponse({"error": f"no change events for {body.get('object')}"}, 400)
        if change_type not in CHANGE_TYPES or not change_type.startswith("GAP_"):
            return JSONResponse({"error": f"changeType must be GAP_*, not {change_type}"}, 400)
        record_ids = [ids.normalize(str(i)) or str(i) for i in body.get("recordIds", [])]
        if not record_ids and change_type != "GAP_OVERFLOW":
            return JSONResponse({"error": "recordIds required"}, 400)
        event = bus.inject(entity, change_type, record_ids)
        return JSONResponse(
            {"replay_id": encode_replay(event.replay).hex(), "recordIds": list(event.record_ids)}
        )

    async def expire(request: Request) -> JSONResponse:
        body = await request.json()
        dropped = bus.expire(float(body.get("older_than_seconds", 0)))
        return JSONResponse({"expired": dropped, **bus.state()})

    async def settings(request: Request) -> JSONResponse:
        body = await request.json()
        with bus.cond:
            if "keepalive_seconds" in body:
                bus.keepalive_seconds = max(0.05, float(body["keepalive_seconds"]))
            if "retention_seconds" in body:
                bus.retention_seconds = max(0.0, float(body["retention_seconds"]))
            bus.cond.notify_all()
        return JSONResponse(bus.state())

    async def restore(request: Request) -> JSONResponse:
        body = await request.json()
        entity = _entity(bus, str(body.get("object", "")))
        if entity is None:
            return JSONResponse({"error": f"no change events for {body.get('object')}"}, 400)
        try:
            undelete(entity, str(body.get("id", "")))
        except LookupError as exc:
            return JSONResponse({"error": str(exc)}, 404)
        return JSONResponse(bus.state())

    return [
        Route(base, state, methods=["GET"]),
        Route(f"{base}/events", inject, methods=["POST"]),
        Route(f"{base}/expire", expire, methods=["POST"]),
        Route(f"{base}/settings", settings, methods=["POST"]),
        Route(f"{base}/undelete", restore, methods=["POST"]),
    ]


def _entity(bus: ChangeEventBus, name: str) -> str | None:
    return next((e for e in bus.channels if e.lower() == name.lower()), None)
