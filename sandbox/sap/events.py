"""Business events of the SAP emulator: after each committed write of a business partner
(or its customer role), sales contract, billing document or reservation, one CloudEvent
per changed key is POSTed to every configured subscriber, as S/4HANA's event bindings do.

Events carry keys only (``{"BusinessPartner": "1000123"}``), come from
``/default/sap.s4.beh/<system id>`` and are typed like S/4's
(``sap.s4.beh.businesspartner.v1.BusinessPartner.Changed.v1``; see
``hub/events/sap_events.py`` for which names are published and which are assumed).
Delivery runs in a background thread so OData writes never wait for a subscriber; a 5xx
answer or a connection error is retried with backoff, a 4xx is not.

Faults (settings, or at run time through ``/__sandbox/events``): ``delay_seconds`` before
each delivery, ``duplicate_rate`` (an event delivered twice), ``reorder_window`` (hold that
many events and deliver them shuffled), ``drop_rate`` (an event never delivered), all
drawn from a random generator seeded with ``seed`` so a test sees the same faults every
run. ``POST /__sandbox/events/flush`` (or :meth:`EventEmitter.flush`) waits until every
event so far is delivered, dropped or given up.
"""

from __future__ import annotations

import base64
import json
import logging
import queue
import random
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import httpx
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from sandbox.faults import ADMIN_PREFIX

log = logging.getLogger(__name__)

EventMode = Literal["structured", "binary"]
#: seconds a worker with nothing to do waits before it ends (the next event starts one)
IDLE_EXIT = 30.0


class EventFaults(BaseModel):
    delay_seconds: float = Field(default=0.0, ge=0.0, le=60.0)
    duplicate_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    drop_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    #: hold this many events and deliver them shuffled (0 or 1: in order)
    reorder_window: int = Field(default=0, ge=0, le=1000)
    #: a partly filled window is released after this long without a new event
    reorder_hold_seconds: float = Field(default=1.0, ge=0.0, le=60.0)
    seed: int = 0


class EventSettings(BaseModel):
    """Where and how the emulator sends its business events."""

    subscribers: list[str] = Field(default_factory=list, description="webhook URLs")
    mode: EventMode = "structured"
    #: a shared secret sent in ``secret_header``
    secret: str | None = None
    secret_header: str = "X-Hub-Event-Secret"  # noqa: S105 - a header name
    #: or HTTP basic auth
    user: str | None = None
    password: str | None = None
    max_attempts: int = Field(default=5, ge=1)
    #: the first retry's wait; each later one doubles it, up to ``retry_backoff_max_seconds``
    #: (SAP Event Mesh keeps an undelivered message queued and retries at a capped interval)
    retry_backoff_seconds: float = Field(default=0.05, ge=0.0)
    retry_backoff_max_seconds: float = Field(default=30.0, ge=0.0)
    timeout_seconds: float = Field(default=5.0, gt=0.0)
    faults: EventFaults = Field(default_factory=EventFaults)


@dataclass(frozen=True)
class BusinessObject:
    """A collection whose writes raise events: the event type's parts and the key field."""

    namespace: str
    name: str
    key: str


#: store collection -> the business object its documents are (headers only: a change to an
#: item or a role re-stamps its header, which the commit then carries)
EVENT_OBJECTS: dict[str, BusinessObject] = {
    "API_BUSINESS_PARTNER.A_BusinessPartner": BusinessObject(
        "businesspartner", "BusinessPartner", "BusinessPartner"
    ),
    "API_SALES_CONTRACT_SRV.A_SalesContract": BusinessObject(
        "salescontract", "SalesContract", "SalesContract"
    ),
    "API_BILLING_DOCUMENT_SRV.A_BillingDocument": BusinessObject(
        "billingdocument", "BillingDocument", "BillingDocument"
    ),
    # the reservation event name is assumed (see hub/events/sap_events.py)
    "API_RESERVATION_DOCUMENT_SRV.A_ReservationDocumentHeader": BusinessObject(
        "reservationdocument", "ReservationDocument", "Reservation"
    ),
}


@dataclass(frozen=True)
class Change:
    """One committed change of a business object: Created, Changed, Deleted or Canceled."""

    collection: str
    key: str
    operation: str

    def event(self, system_id: str) -> dict[str, Any]:
        obj = EVENT_OBJECTS[self.collection]
        return {
            "specversion": "1.0",
            "type": f"sap.s4.beh.{obj.namespace}.v1.{obj.name}.{self.operation}.v1",
            "source": f"/default/sap.s4.beh/{system_id}",
            "id": str(uuid.uuid4()),
            "time": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "datacontenttype": "application/json",
            "data": {obj.key: self.key},
        }


def classify_commit(
    pending: dict[tuple[str, str], dict[str, Any] | None],
    current: Callable[[str, str], dict[str, Any] | None],
) -> list[Change]:
    """The business object changes a unit of work's ``pending`` writes make, judged against
    the ``current`` stored documents (call before the commit applies them)."""
    out: list[Change] = []
    for (coll, key), doc in pending.items():
        if coll not in EVENT_OBJECTS:
            continue
        before = current(coll, key)
        if doc is None:
            if before is not None:
                out.append(Change(coll, key, "Deleted"))
            continue
        if before is None:
            out.append(Change(coll, key, "Created"))
        elif doc.get("BillingDocumentIsCancelled") and not before.get("BillingDocumentIsCancelled"):
            out.append(Change(coll, key, "Canceled"))
        else:
            out.append(Change(coll, key, "Changed"))
    return out


class EventEmitter:
    """The delivery queue and its worker thread (started on the first event)."""

    def __init__(self, settings: EventSettings, system_id: str) -> None:
        self.settings = settings
        self.system_id = system_id
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._lock = threading.Condition()
        self._unfinished = 0
        self._flush_requested = 0
        self._held: list[dict[str, Any]] = []
        self._thread: threading.Thread | None = None
        self._closed = False
        self._rng = random.Random(settings.faults.seed)
        self.stats = {
            "published": 0,
            "delivered": 0,
            "duplicated": 0,
            "dropped": 0,
            "failed": 0,
            "retried": 0,
        }

    # ------------------------------------------------------------------ configuration
    def configure(self, payload: dict[str, Any]) -> None:
        """Change subscribers, auth, mode or faults at run time (partial update)."""
        merged = self.settings.model_dump()
        faults = payload.get("faults")
        merged.update({k: v for k, v in payload.items() if k != "faults"})
        if isinstance(faults, dict):
            merged["faults"] = {**merged["faults"], **faults}
        settings = EventSettings.model_validate(merged)
        with self._lock:
            if settings.faults.seed != self.settings.faults.seed or faults is not None:
                self._rng = random.Random(settings.faults.seed)
            self.settings = settings

    def status(self) -> dict[str, Any]:
        with self._lock:
            shown = self.settings.model_dump(exclude={"secret", "password"})
            return {
                "settings": shown,
                "stats": dict(self.stats),
                "queued": self._unfinished,
                "held": len(self._held),
            }

    # ------------------------------------------------------------------ publishing
    def publish(self, changes: list[Change]) -> None:
        """Queue one event per change (called after the write committed)."""
        if not changes or not self.settings.subscribers:
            return
        with self._lock:
            if self._closed:
                return
            self._start()
            for change in changes:
                self._unfinished += 1
                self.stats["published"] += 1
                self._queue.put(change.event(self.system_id))

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every published event is delivered, dropped or given up (held events
        of a reorder window are released); False on timeout."""
        deadline = time.monotonic() + timeout
        with self._lock:
            self._flush_requested += 1
            self._queue.put(None)  # wake the worker so it releases a held window
            try:
                while self._unfinished:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return False
                    self._lock.wait(left)
                return True
            finally:
                self._flush_requested -= 1

    def close(self) -> None:
        with self._lock:
            self._closed = True
        self._queue.put(None)

    # ------------------------------------------------------------------ delivery
    def _start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(
                target=self._run, name="sap-business-events", daemon=True
            )
            self._thread.start()

    def _run(self) -> None:
        idle_since = time.monotonic()
        with httpx.Client(timeout=self.settings.timeout_seconds) as client:
            while True:
                hold = self.settings.faults.reorder_hold_seconds if self._held else 0.2
                try:
                    item = self._queue.get(timeout=max(hold, 0.01))
                except queue.Empty:
                    item = None
                with self._lock:
                    idle = item is None and not self._held and self._queue.empty()
                    if idle and (self._closed or time.monotonic() - idle_since > IDLE_EXIT):
                        # publish() starts a new worker (under this lock) when needed
                        self._thread = None
                        return
                    if not idle:
                        idle_since = time.monotonic()
                    window = self.settings.faults.reorder_window
                    flushing = self._flush_requested > 0
                if item is not None:
                    self._held.append(item)
                # release when the window is full, or when nothing more is queued and the
                # sender is idle or flushing (holding events forever would lose them)
                if not self._held:
                    continue
                more = item is not None and (not flushing or not self._queue.empty())
                if window > 1 and len(self._held) < window and more:
                    continue
                batch, self._held = self._held, []
                with self._lock:
                    if window > 1:
                        self._rng.shuffle(batch)
                for event in batch:
                    self._deliver_one(client, event)

    def _deliver_one(self, client: httpx.Client, event: dict[str, Any]) -> None:
        try:
            with self._lock:
                faults = self.settings.faults
                drop = faults.drop_rate > 0 and self._rng.random() < faults.drop_rate
                dup = (
                    not drop
                    and faults.duplicate_rate > 0
                    and self._rng.random() < faults.duplicate_rate
                )
                settings = self.settings
            if drop:
                self._count("dropped")
                log.info("event %s dropped by fault injection", event["id"])
                return
            if faults.delay_seconds:
                time.sleep(faults.delay_seconds)
            for copy in range(2 if dup else 1):
                if copy:
                    self._count("duplicated")
                for url in settings.subscribers:
                    ok = self._post(client, settings, url, event)
                    self._count("delivered" if ok else "failed")
        except Exception:  # the worker must survive anything one event does
            log.exception("event %s could not be delivered", event.get("id"))
            self._count("failed")
        finally:
            with self._lock:
                self._unfinished -= 1
                self._lock.notify_all()

    def _post(
        self, client: httpx.Client, settings: EventSettings, url: str, event: dict[str, Any]
    ) -> bool:
        headers, body = encode(event, settings)
        for attempt in range(settings.max_attempts):
            if attempt:
                self._count("retried")
                wait = settings.retry_backoff_seconds * 2 ** (attempt - 1)
                time.sleep(min(wait, settings.retry_backoff_max_seconds))
            try:
                resp = client.post(url, headers=headers, content=body)
            except httpx.TransportError as exc:
                log.info("event %s to %s: %s (attempt %d)", event["id"], url, exc, attempt + 1)
                continue
            if resp.status_code < 300:
                return True
            if resp.status_code < 500 and resp.status_code != 429:
                log.warning("event %s refused by %s: %s", event["id"], url, resp.status_code)
                return False
        return False

    def _count(self, name: str) -> None:
        with self._lock:
            self.stats[name] += 1


def encode(event: dict[str, Any], settings: EventSettings) -> tuple[dict[str, str], bytes]:
    """The HTTP headers and body of ``event`` in the configured mode, with credentials."""
    headers: dict[str, str] = {}
    if settings.secret:
        headers[settings.secret_header] = settings.secret
    if settings.user and settings.password:
        token = base64.b64encode(f"{settings.user}:{settings.password}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    if settings.mode == "structured":
        headers["Content-Type"] = "application/cloudevents+json; charset=utf-8"
        return headers, json.dumps(event, separators=(",", ":")).encode()
    for name, value in event.items():
        if name in ("data", "datacontenttype"):
            continue
        headers[f"ce-{name}"] = str(value)
    headers["Content-Type"] = event.get("datacontenttype", "application/json")
    return headers, json.dumps(event.get("data"), separators=(",", ":")).encode()


def event_routes(emitter: EventEmitter) -> list[Route]:
    """``/__sandbox/events``: GET status, POST settings/faults (partial), DELETE faults;
    ``/__sandbox/events/flush``: POST, waits for delivery (``{"timeout": seconds}``)."""

    async def events(request: Request) -> JSONResponse:
        if request.method == "POST":
            payload = await request.json()
            if not isinstance(payload, dict):
                return JSONResponse({"error": "expected a JSON object"}, status_code=400)
            try:
                emitter.configure(payload)
            except ValueError as exc:
                return JSONResponse({"error": str(exc)}, status_code=400)
        elif request.method == "DELETE":
            emitter.configure({"faults": EventFaults().model_dump()})
        return JSONResponse(emitter.status())

    async def flush(request: Request) -> JSONResponse:
        body = await request.body()
        timeout = float(json.loads(body).get("timeout", 10)) if body else 10.0
        done = await run_in_threadpool(emitter.flush, timeout)
        return JSONResponse({"flushed": done, **emitter.status()}, status_code=200 if done else 504)

    return [
        Route(f"{ADMIN_PREFIX}/events", events, methods=["GET", "POST", "DELETE"]),
        Route(f"{ADMIN_PREFIX}/events/flush", flush, methods=["POST"]),
    ]
