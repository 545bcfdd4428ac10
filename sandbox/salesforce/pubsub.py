"""The Salesforce Pub/Sub API emulator: a gRPC server (``eventbus.v1.PubSub`` from the
vendored ``pubsub_api.proto``) over TLS on loopback, serving the Change Data Capture
events of :mod:`sandbox.salesforce.pubsub_events`.

What a client meets, as with the real API (``api.pubsub.salesforce.com:7443``):

* **Authentication** by call metadata ``accesstoken`` (an OAuth access token of the
  emulated org), ``instanceurl`` and ``tenantid`` (the org id). A missing, invalid or
  expired token (TTL, or the ``token_expiry`` fault) answers ``UNAUTHENTICATED`` with the
  trailer ``error-code: sfdc.platform.eventbus.grpc.service.auth.error``; a token expiring
  while a subscription is open ends that stream the same way (the client reconnects with
  a fresh token and its stored replay id), unless the client has sent a fresh one in a
  FetchRequest's ``auth_refresh``.
* **Topics**: ``/data/<Object>ChangeEvent``, ``/data/<Name>__ChangeEvent`` for custom
  objects ``<Name>__c``, and ``/data/ChangeEvents`` (all of them). Anything else:
  ``NOT_FOUND`` ("The topic information for org ... and topic ... not found").
* **Subscribe**: replay presets LATEST (default), EARLIEST and CUSTOM (events after the
  given replay id). A CUSTOM id that is older than the retention window (or malformed, or
  not yet issued) fails the stream with ``INVALID_ARGUMENT``, ``error-code:
  sfdc.platform.eventbus.grpc.subscription.fetch.replayid.validation.failed``.
* **Flow control**: never more events than requested and not yet delivered
  (``num_requested`` is at most 100 per FetchRequest, more is ``INVALID_ARGUMENT``);
  ``pending_num_requested`` is reported in every response.
* **Keepalive**: an idle stream receives an empty FetchResponse with ``latest_replay_id``
  every ``keepalive_seconds`` (real: 270 s; settings ``pubsub_keepalive_seconds``).
* **GetTopic**, **GetSchema** (the Avro schema JSON by schema id). ``Publish`` to change
  event channels is refused (``UNIMPLEMENTED``), as change events are published by the
  org only.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import grpc

from connectors.salesforce_pubsub import pubsub_api_pb2 as pb2
from connectors.salesforce_pubsub import pubsub_api_pb2_grpc as pb2_grpc
from sandbox.salesforce.errors import ApiError
from sandbox.salesforce.pubsub_events import (
    ChangeEventBus,
    decode_replay,
    encode_replay,
)
from sandbox.server import LOOPBACK, TLSFiles, free_port

MAX_NUM_REQUESTED = 100
AUTH_ERROR = "sfdc.platform.eventbus.grpc.service.auth.error"
TOPIC_NOT_FOUND = "sfdc.platform.eventbus.grpc.service.topic.not.found"
SCHEMA_NOT_FOUND = "sfdc.platform.eventbus.grpc.service.schema.not.found"
REPLAY_INVALID = "sfdc.platform.eventbus.grpc.subscription.fetch.replayid.validation.failed"
REPLAY_CORRUPTED = "sfdc.platform.eventbus.grpc.subscription.fetch.replayid.corrupted"
FLOW_CONTROL = "sfdc.platform.eventbus.grpc.flow.control.error"
TOPIC_CHANGED = "sfdc.platform.eventbus.grpc.subscription.topic.change.error"
PUBLISH_REFUSED = "sfdc.platform.eventbus.grpc.publish.not.allowed"
#: how often an open stream re-checks its token and wakes up at the latest
_TICK = 0.2


def _abort(context: grpc.ServicerContext, code: grpc.StatusCode, error_code: str, text: str) -> Any:
    rpc_id = str(uuid.uuid4())
    context.set_trailing_metadata((("error-code", error_code), ("rpc-id", rpc_id)))
    context.abort(code, f"[{error_code}] {text} rpcId: {rpc_id}")


def _unauthenticated(context: grpc.ServicerContext, problem: str) -> Any:
    """End the call as the real API does when its credentials fail."""
    return _abort(
        context,
        grpc.StatusCode.UNAUTHENTICATED,
        AUTH_ERROR,
        f"An error occurred while trying to authenticate: {problem}.",
    )


def _metadata(context: grpc.ServicerContext) -> dict[str, str]:
    return {str(k).lower(): str(v) for k, v in context.invocation_metadata() or ()}


@dataclass
class _Stream:
    """What the request reader of one Subscribe stream tells its sender."""

    token: str
    pending: int = 0
    topic: str = ""
    error: tuple[grpc.StatusCode, str, str] | None = None
    closed: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)


class PubSubService(pb2_grpc.PubSubServicer):
    """The servicer; one per emulated org."""

    def __init__(self, emulator: Any) -> None:
        self.emulator = emulator
        self.bus: ChangeEventBus = emulator.events
        self.settings = emulator.settings

    # -- authentication --------------------------------------------------------------------
    def _token_problem(self, token: str) -> str | None:
        if not token:
            return "missing accesstoken"
        try:
            self.emulator.tokens.check(f"Bearer {token}")
        except ApiError:
            return "the session is invalid or has expired"
        return None

    def _authenticate(self, context: grpc.ServicerContext) -> str:
        meta = _metadata(context)
        token = meta.get("accesstoken", "")
        problem = self._token_problem(token)
        org = self.settings.org_id
        tenant = meta.get("tenantid", "")
        if problem is None and not meta.get("instanceurl"):
            problem = "missing instanceurl"
        if problem is None and (not tenant or tenant[:15] != org[:15]):
            problem = f"tenantid {tenant or '(missing)'} does not match the session's org"
        if problem is not None:
            _unauthenticated(context, problem)
        return token

    def _not_found(self, context: grpc.ServicerContext, topic: str) -> Any:
        org = self.settings.org_id
        return _abort(
            context,
            grpc.StatusCode.NOT_FOUND,
            TOPIC_NOT_FOUND,
            f"The topic information for org CORE/prod/{org} and topic {topic} not found. "
            "Ensure the topic name is correct and that the topic exists.",
        )

    # -- unary calls -----------------------------------------------------------------------
    def GetTopic(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._authenticate(context)
        topic = request.topic_name
        if not self.bus.is_topic(topic):
            return self._not_found(context, topic)
        channel = self.bus.channel_for_topic(topic)
        return pb2.TopicInfo(
            topic_name=topic,
            tenant_guid=self.settings.org_id,
            can_publish=False,
            can_subscribe=True,
            schema_id=channel.schema_id if channel else "",
            rpc_id=str(uuid.uuid4()),
        )

    def GetSchema(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._authenticate(context)
        text = self.bus.schema_json(request.schema_id)
        if text is None:
            return _abort(
                context,
                grpc.StatusCode.NOT_FOUND,
                SCHEMA_NOT_FOUND,
                f"The schema {request.schema_id} was not found.",
            )
        return pb2.SchemaInfo(
            schema_json=text, schema_id=request.schema_id, rpc_id=str(uuid.uuid4())
        )

    def Publish(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._authenticate(context)
        return _abort(
            context,
            grpc.StatusCode.UNIMPLEMENTED,
            PUBLISH_REFUSED,
            f"Publishing to {request.topic_name or 'this topic'} is not supported: change "
            "events are published by the org only.",
        )

    # -- Subscribe -------------------------------------------------------------------------
    def Subscribe(
        self, request_iterator: Iterator[Any], context: grpc.ServicerContext
    ) -> Iterator[Any]:
        token = self._authenticate(context)
        try:
            first = next(request_iterator)
        except (StopIteration, grpc.RpcError):
            return
        topic = first.topic_name
        if not self.bus.is_topic(topic):
            self._not_found(context, topic)
            return
        cursor = self._start(first, context)
        stream = _Stream(token=token, topic=topic)
        self._take(stream, first)
        if stream.error is not None:
            _abort(context, *stream.error)
            return
        reader = threading.Thread(
            target=self._read, args=(stream, request_iterator), name="pubsub-reader", daemon=True
        )
        reader.start()
        last_sent = time.monotonic()
        bus = self.bus
        while context.is_active():
            if stream.error is not None:
                _abort(context, *stream.error)
                return
            problem = self._token_problem(stream.token)
            if problem is not None:
                _unauthenticated(context, problem)
                return
            response = None
            with bus.cond:
                with stream.lock:
                    pending = stream.pending
                if pending > 0:
                    events, cursor = bus.read(cursor, topic, min(pending, MAX_NUM_REQUESTED))
                    if events:
                        with stream.lock:
                            stream.pending -= len(events)
                            pending = stream.pending
                        response = pb2.FetchResponse(
                            events=[
                                pb2.ConsumerEvent(
                                    event=pb2.ProducerEvent(
                                        id=e.event_id, schema_id=e.schema_id, payload=e.payload
                                    ),
                                    replay_id=encode_replay(e.replay),
                                )
                                for e in events
                            ],
                            latest_replay_id=encode_replay(cursor),
                            rpc_id=str(uuid.uuid4()),
                            pending_num_requested=pending,
                        )
                idle = time.monotonic() - last_sent
                if response is None and idle >= bus.keepalive_seconds:
                    response = pb2.FetchResponse(
                        latest_replay_id=encode_replay(cursor),
                        rpc_id=str(uuid.uuid4()),
                        pending_num_requested=pending,
                    )
                if response is None:
                    wait = min(_TICK, max(0.01, bus.keepalive_seconds - idle))
                    bus.cond.wait(wait)
                    continue
            last_sent = time.monotonic()
            yield response

    def _start(self, first: Any, context: grpc.ServicerContext) -> int:
        """The replay position the subscription starts after."""
        bus = self.bus
        bus.prune_expired()
        if first.replay_preset == pb2.ReplayPreset.EARLIEST:
            return bus.expired_through
        if first.replay_preset != pb2.ReplayPreset.CUSTOM:
            return bus.latest_replay
        replay = decode_replay(first.replay_id)
        if replay is None:
            _abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                REPLAY_CORRUPTED,
                "The Replay ID validation failed: the replay id is corrupted.",
            )
            return 0
        if replay <= bus.expired_through or replay > bus.latest_replay:
            _abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                REPLAY_INVALID,
                "The Replay ID validation failed. Ensure that the Replay ID is valid and "
                "within the retention window.",
            )
        return replay

    def _take(self, stream: _Stream, request: Any) -> None:
        """Apply one FetchRequest (flow control, auth refresh) to the stream's state."""
        n = request.num_requested
        with stream.lock:
            if n < 0 or n > MAX_NUM_REQUESTED:
                stream.error = (
                    grpc.StatusCode.INVALID_ARGUMENT,
                    FLOW_CONTROL,
                    f"num_requested must be between 0 and {MAX_NUM_REQUESTED}, not {n}.",
                )
                return
            if request.topic_name and request.topic_name != stream.topic:
                stream.error = (
                    grpc.StatusCode.INVALID_ARGUMENT,
                    TOPIC_CHANGED,
                    "The topic of a subscription cannot change within the stream.",
                )
                return
            stream.pending += n
        if request.auth_refresh:
            if self._token_problem(request.auth_refresh) is None:
                stream.token = request.auth_refresh
            else:
                with stream.lock:
                    stream.error = (
                        grpc.StatusCode.UNAUTHENTICATED,
                        AUTH_ERROR,
                        "An error occurred while trying to authenticate: the auth_refresh "
                        "token is invalid or has expired.",
                    )

    def _read(self, stream: _Stream, requests: Iterator[Any]) -> None:
        try:
            for request in requests:
                self._take(stream, request)
                with self.bus.cond:
                    self.bus.cond.notify_all()
        except grpc.RpcError:
            pass
        except Exception:  # noqa: S110 - the stream is over; the sender notices
            pass
        finally:
            stream.closed = True


# -- serving -------------------------------------------------------------------------------
def find_emulator(app: Any) -> Any:
    """The ``SalesforceEmulator`` behind an app from ``create_app`` (through its
    middleware wrappers)."""
    current = app
    for _ in range(10):
        state = getattr(current, "state", None)
        if state is not None and hasattr(state, "emulator"):
            return state.emulator
        current = getattr(current, "app", None)
        if current is None:
            break
    raise LookupError("not a Salesforce emulator app")


class PubSubServer:
    """The gRPC server (TLS, loopback) of one emulated org."""

    def __init__(self, emulator: Any, tls: TLSFiles, port: int = 0, workers: int = 64) -> None:
        self.emulator = emulator
        self.server = grpc.server(
            ThreadPoolExecutor(max_workers=workers, thread_name_prefix="pubsub"),
            options=[("grpc.so_reuseport", 0)],
        )
        pb2_grpc.add_PubSubServicer_to_server(PubSubService(emulator), self.server)
        credentials = grpc.ssl_server_credentials(
            [(tls.keyfile.read_bytes(), tls.certfile.read_bytes())]
        )
        self.port = 0
        # like the HTTP emulators, a port below the ephemeral range (see server.free_port)
        for _ in range(1 if port else 20):
            try:
                self.port = self.server.add_secure_port(
                    f"{LOOPBACK}:{port or free_port()}", credentials
                )
            except RuntimeError:
                self.port = 0
            if self.port:
                break
        if not self.port:
            raise OSError(
                f"cannot listen on {LOOPBACK}:{port or 'a free port'} for the Pub/Sub API"
            )

    @property
    def target(self) -> str:
        """``host:port``, as ``SALESFORCE_PUBSUB_URL`` has it."""
        return f"{LOOPBACK}:{self.port}"

    def start(self) -> PubSubServer:
        self.server.start()
        return self

    def stop(self, grace: float = 0.5) -> None:
        self.server.stop(grace).wait(timeout=grace + 5)


@contextmanager
def serve_pubsub(app_or_emulator: Any, tls: TLSFiles, port: int = 0) -> Iterator[PubSubServer]:
    """Serve the Pub/Sub API of an emulator (or its app) until the block ends."""
    emulator = (
        app_or_emulator if hasattr(app_or_emulator, "events") else find_emulator(app_or_emulator)
    )
    server = PubSubServer(emulator, tls, port).start()
    try:
        yield server
    finally:
        server.stop()
