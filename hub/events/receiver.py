"""The SAP business event webhook: a Starlette ASGI app that S/4HANA (or SAP Event Mesh /
Advanced Event Mesh) POSTs CloudEvents to.

Per request: authenticate (a shared-secret header or HTTP basic auth, both compared in
constant time; 401 with ``WWW-Authenticate`` otherwise), parse (structured, batched or
binary mode; 400 naming the bad attribute), map each event to a hub entity, change and keys
(unmapped types are stored as ``ignored``), store the events in the inbox and only then
answer 202: an event is durable before it is acknowledged. A store failure answers 503 with
``Retry-After`` so the sender retries; a redelivered event id answers 202 and stores
nothing new. ``OPTIONS`` answers the CloudEvents webhook validation handshake
(``WebHook-Request-Origin`` -> ``WebHook-Allowed-Origin``).

Secrets are never logged: log lines carry event ids, types and counts only.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from hub.events.cloudevents import CloudEvent, CloudEventError, parse_http
from hub.events.inbox import IGNORED, InboxEvent, store_events
from hub.events.sap_events import SYSTEM, classify

log = logging.getLogger(__name__)

DEFAULT_PATH = "/events/sap"
DEFAULT_SECRET_HEADER = "X-Hub-Event-Secret"  # noqa: S105 - a header name
#: the largest request body accepted (S/4 events carry keys only: a few hundred bytes)
MAX_BODY = 1_000_000


@dataclass(frozen=True)
class ReceiverAuth:
    """How senders authenticate: a shared secret in ``secret_header``, or HTTP basic auth
    with ``user``/``password`` (either is accepted when both are configured). At least one
    must be set: the receiver never runs open."""

    secret: str | None = field(default=None, repr=False)
    secret_header: str = DEFAULT_SECRET_HEADER
    user: str | None = None
    password: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not self.secret and not (self.user and self.password):
            raise ValueError(
                "the event receiver needs a shared secret or a basic-auth user and password"
            )

    def check(self, headers: Any) -> bool:
        """True when the request carries a valid credential (constant-time compares; both
        configured methods are checked, so timing does not tell which one failed)."""
        ok = False
        if self.secret:
            given = headers.get(self.secret_header) or ""
            ok |= hmac.compare_digest(given.encode(), self.secret.encode())
        if self.user and self.password:
            user, password = _basic(headers.get("authorization") or "")
            user_ok = hmac.compare_digest(user.encode(), self.user.encode())
            password_ok = hmac.compare_digest(password.encode(), self.password.encode())
            ok |= user_ok and password_ok
        return ok

    def challenge(self) -> str:
        if self.user and self.password:
            return 'Basic realm="hub events", charset="UTF-8"'
        return f'{self.secret_header} realm="hub events"'


def _basic(header: str) -> tuple[str, str]:
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "basic" or not token:
        return "", ""
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return "", ""
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else ("", "")


def to_inbox_event(event: CloudEvent) -> InboxEvent:
    """The inbox row of one SAP event (ignored when its type is not mapped). Raises
    :class:`CloudEventError` when a mapped type lacks its key."""
    change = classify(event)
    return InboxEvent(
        system=SYSTEM,
        event_id=event.id,
        event_type=event.type,
        entity=change.entity,
        change_type=change.change_type,
        record_keys=list(change.record_keys),
        payload=event.attributes(),
        channel=change.system_id,
        outcome=IGNORED if change.entity is None else None,
    )


def create_receiver(
    engine: Engine,
    auth: ReceiverAuth,
    *,
    path: str = DEFAULT_PATH,
    allowed_origins: Sequence[str] | None = None,
    on_stored: Callable[[list[str]], None] | None = None,
) -> Starlette:
    """The webhook as an ASGI app serving ``path``. ``allowed_origins``: the origins the
    validation handshake accepts (None: any authenticated sender). ``on_stored`` is called
    with the new event ids after each commit (e.g. to wake a processor)."""

    def unauthorized() -> Response:
        return JSONResponse(
            {"error": "authentication required"},
            status_code=401,
            headers={"WWW-Authenticate": auth.challenge()},
        )

    async def handshake(request: Request) -> Response:
        if not auth.check(request.headers):
            return unauthorized()
        origin = request.headers.get("webhook-request-origin")
        if not origin:
            return Response(status_code=200, headers={"Allow": "POST, OPTIONS"})
        if allowed_origins is not None and origin not in allowed_origins:
            return JSONResponse({"error": f"origin {origin!r} is not allowed"}, status_code=403)
        headers = {"WebHook-Allowed-Origin": origin, "Allow": "POST, OPTIONS"}
        rate = request.headers.get("webhook-request-rate")
        if rate:
            headers["WebHook-Allowed-Rate"] = rate
        return Response(status_code=200, headers=headers)

    async def receive(request: Request) -> Response:
        if not auth.check(request.headers):
            log.warning("event rejected: no valid credential (from %s)", _client(request))
            return unauthorized()
        body = await request.body()
        if len(body) > MAX_BODY:
            return JSONResponse({"error": "request body too large"}, status_code=413)
        try:
            events = parse_http(dict(request.headers), body)
            rows = [to_inbox_event(event) for event in events]
        except CloudEventError as exc:
            log.warning("event rejected: %s", exc)
            return JSONResponse({"error": str(exc), "attribute": exc.attribute}, status_code=400)
        try:
            new = await run_in_threadpool(_store, engine, rows)
        except SQLAlchemyError as exc:
            log.error(
                "events %s not stored (%s): answering 503 so the sender retries",
                [r.event_id for r in rows],
                type(exc).__name__,
            )
            return JSONResponse(
                {"error": "the hub store is unavailable; retry"},
                status_code=503,
                headers={"Retry-After": "5"},
            )
        fresh = set(new)
        for row in rows:
            log.info(
                "event %s %s %s",
                row.event_id,
                row.event_type,
                "stored" if row.event_id in fresh else "duplicate",
            )
        if on_stored is not None and new:
            try:
                on_stored(new)
            except Exception:  # the events are durable: acknowledge them whatever a hook does
                log.exception("on_stored hook failed for events %s", new)
        return JSONResponse(
            {"accepted": len(rows), "stored": len(new), "duplicates": len(rows) - len(new)},
            status_code=202,
        )

    routes = [
        Route(path, receive, methods=["POST"]),
        Route(path, handshake, methods=["OPTIONS"]),
    ]
    return Starlette(routes=routes)


def _store(engine: Engine, rows: list[InboxEvent]) -> list[str]:
    with engine.begin() as conn:
        return store_events(conn, rows)


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"
