"""A Change Data Capture subscriber on Salesforce's Pub/Sub API (gRPC, generated stubs).

Protocol, as the Pub/Sub API guide describes it:

- every call carries the metadata ``accesstoken``, ``instanceurl`` and ``tenantid`` (the
  org id); the channel is TLS, verified with HUB_CA_BUNDLE / ``ca_bundle`` or the system
  roots, never without verification;
- ``Subscribe`` is pull-based: the first FetchRequest names the topic, the replay preset
  (LATEST, EARLIEST, or CUSTOM after a stored replay id) and ``num_requested`` (at most
  100); the subscriber asks again, for what it has room for, once the server's
  ``pending_num_requested`` has fallen to half the batch, so no request exceeds 100 and no
  more than 100 events are ever outstanding. A response without events is a keepalive
  carrying the stream's latest replay id;
- payloads are Avro, decoded with the schema ``GetSchema`` returns (cached by schema id).

Durability is the caller's: :class:`Subscription` yields events and keepalives, and the
caller calls :meth:`Subscription.ack` with a replay id once everything up to it is stored
durably. Whenever the subscription has to be re-established (an expired token, a dropped
connection) it resumes after the last acknowledged replay id - nothing acknowledged is
delivered again and nothing unacknowledged is lost. A caller that acknowledges each event
before asking for the next sees no duplicates either."""

from __future__ import annotations

import logging
import os
import queue
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import grpc
from tenacity import RetryCallState, Retrying, wait_exponential_jitter

from connectors.errors import (
    AuthError,
    ConnectorError,
    PermanentError,
    SystemUnavailableError,
    TransientError,
)
from connectors.redact import redact, register_secret
from connectors.retry import call_with_retry
from connectors.salesforce import CALL_CLIENT, SYSTEM, SalesforceConnector, SalesforceSettings
from connectors.salesforce_pubsub import pubsub_api_pb2 as pb2
from connectors.salesforce_pubsub import pubsub_api_pb2_grpc as pb2_grpc
from connectors.salesforce_pubsub.events import (
    ChangeEvent,
    EventDecodeError,
    SchemaCache,
    decode_payload,
    to_change_event,
)
from connectors.settings import CA_BUNDLE

log = logging.getLogger("hub.connectors.salesforce_pubsub")

#: gRPC status codes worth a new subscription after a pause
TRANSIENT_CODES = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.UNKNOWN,
    }
)
#: the trailer in which the Pub/Sub API names its own error code
ERROR_CODE_TRAILER = "error-code"
#: error codes of a replay id the API will not resume from (older than the 72-hour
#: retention, of another channel, or not a replay id at all)
REPLAY_ID_ERRORS = (
    "sfdc.platform.eventbus.grpc.subscription.fetch.replayid.corrupted",
    "sfdc.platform.eventbus.grpc.subscription.fetch.replayid.validation.failed",
)


# -- credentials -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Credentials:
    access_token: str
    instance_url: str
    #: the org id (``tenantid``)
    tenant_id: str
    #: the integration user's id (the token's identity URL), the ``commitUser`` of the
    #: change events its writes cause; empty when the provider does not know it
    user_id: str = ""

    def __repr__(self) -> str:  # never the token, whoever prints it
        return (
            f"Credentials(instance_url={self.instance_url!r}, tenant_id={self.tenant_id!r}, "
            f"user_id={self.user_id!r})"
        )


class TokenProvider(Protocol):
    """Credentials for the Pub/Sub API; ``refresh=True`` forces a new login (the current
    token was refused)."""

    def __call__(self, refresh: bool = False) -> Credentials: ...


def identity_ids(identity_url: str) -> tuple[str, str]:
    """(org id, user id) of an OAuth token's ``id``
    (``https://login…/id/<org id>/<user id>``)."""
    parts = [p for p in identity_url.split("/") if p]
    if len(parts) >= 3 and parts[-3] == "id":
        return parts[-2], parts[-1]
    raise AuthError(
        SYSTEM,
        f"the OAuth token's id {identity_url!r} does not name the org (expected "
        ".../id/<org id>/<user id>); the Pub/Sub API needs the org id as tenantid",
    )


def org_id_from_identity(identity_url: str) -> str:
    """The org id of an OAuth token's ``id`` (``https://login…/id/<org id>/<user id>``)."""
    return identity_ids(identity_url)[0]


def user_id_from_identity(identity_url: str) -> str:
    """The integration user's id of an OAuth token's ``id``: the ``commitUser`` of the
    change events the hub's own writes cause."""
    return identity_ids(identity_url)[1]


class OAuthTokenProvider:
    """The REST connector's OAuth login (JWT bearer or client credentials, with its
    retries and CA bundle), as Pub/Sub API credentials; the org id and the integration
    user's id come from the token response's identity URL (:attr:`user_id`, with
    :attr:`client`, is how the hub recognises the change events of its own writes)."""

    def __init__(self, settings: SalesforceSettings) -> None:
        self._connector = SalesforceConnector(settings, {})
        self._settings = settings
        self._current: Credentials | None = None
        self.logins = 0

    def __call__(self, refresh: bool = False) -> Credentials:
        if self._current is None or refresh:
            token = call_with_retry(SYSTEM, self._connector._token, self._settings.retry)
            self.logins += 1
            org_id, user_id = identity_ids(str(token.get("id", "")))
            self._current = Credentials(
                access_token=str(token["access_token"]),
                instance_url=str(token["instance_url"]),
                tenant_id=org_id,
                user_id=user_id,
            )
        return self._current

    @property
    def org_id(self) -> str | None:
        """The org id, once logged in (None before the first login)."""
        return self._current.tenant_id if self._current else None

    @property
    def user_id(self) -> str | None:
        """The integration user's id, once logged in (None before the first login): the
        ``commitUser`` of the change events the hub's own writes cause."""
        return self._current.user_id if self._current else None

    @property
    def client(self) -> str:
        """The client name the hub's REST calls carry (``Sforce-Call-Options``), which
        Salesforce writes into the ``changeOrigin`` of the events they cause."""
        return CALL_CLIENT

    def close(self) -> None:
        self._connector.close()


# -- what a subscription yields --------------------------------------------------------------
Preset = Literal["LATEST", "EARLIEST", "CUSTOM"]


@dataclass(frozen=True)
class Replay:
    """Where a subscription starts: the stream's tip, its earliest retained event, or
    after a stored replay id."""

    preset: Preset
    replay_id: bytes = b""

    @classmethod
    def latest(cls) -> Replay:
        return cls("LATEST")

    @classmethod
    def earliest(cls) -> Replay:
        return cls("EARLIEST")

    @classmethod
    def after(cls, replay_id: bytes) -> Replay:
        if not replay_id:
            raise ValueError("Replay.after needs a stored replay id (use latest or earliest)")
        return cls("CUSTOM", bytes(replay_id))

    def describe(self) -> str:
        return f"after replay id {self.replay_id.hex()}" if self.preset == "CUSTOM" else self.preset


@dataclass(frozen=True)
class Keepalive:
    """The server has nothing to deliver; ``latest_replay_id`` is the stream's position,
    which a caller that has stored every event it was given may store as its progress."""

    channel: str
    latest_replay_id: bytes


class ReplayIdExpired(PermanentError):
    """The replay id to resume after is outside the 72-hour retention (or was never this
    channel's): events were missed, and the next poll closes the gap."""

    def __init__(self, channel: str, replay_id: bytes, org: str, detail: str = "") -> None:
        self.channel = channel
        self.replay_id = replay_id
        self.org = org
        super().__init__(
            SYSTEM,
            f"{channel} (org {org}): the Pub/Sub API refused replay id {replay_id.hex()}: "
            f"it is older than the 72-hour event retention or not of this channel"
            f"{f' ({detail})' if detail else ''}. Events since then may be missed: the next "
            "poll closes the gap; then resubscribe from LATEST.",
        )


# -- the subscriber --------------------------------------------------------------------------
def _target(url: str) -> str:
    for scheme in ("https://", "grpcs://"):
        if url.startswith(scheme):
            url = url[len(scheme) :]
    return url.rstrip("/")


class PubSubSubscriber:
    """One gRPC channel to the Pub/Sub API, shared by every subscription made on it."""

    def __init__(
        self,
        settings: SalesforceSettings,
        token_provider: TokenProvider,
        *,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        self.settings = settings
        self.token_provider = token_provider
        self.target = _target(settings.pubsub_url)
        self.sleep = sleep or time.sleep
        bundle = settings.ca_bundle or os.environ.get(CA_BUNDLE) or None
        roots = None
        if bundle:
            try:
                with open(bundle, "rb") as fh:
                    roots = fh.read()
            except OSError as exc:
                raise PermanentError(
                    SYSTEM,
                    f"cannot read the CA bundle {bundle} ({exc.strerror}): point {CA_BUNDLE} "
                    "at a readable PEM file",
                ) from None
        self._channel = grpc.secure_channel(
            self.target,
            grpc.ssl_channel_credentials(root_certificates=roots),
            options=[
                ("grpc.keepalive_time_ms", 60_000),
                ("grpc.keepalive_timeout_ms", 20_000),
                ("grpc.max_receive_message_length", 32 * 1024 * 1024),
            ],
        )
        self.stub = pb2_grpc.PubSubStub(self._channel)
        self._credentials: Credentials | None = None
        self.schemas = SchemaCache(self._fetch_schema)
        #: every FetchRequest's num_requested, in order (for flow-control tests and logs)
        self.requested: list[int] = []

    # -- credentials and metadata ---------------------------------------------------------
    def credentials(self, refresh: bool = False) -> Credentials:
        if self._credentials is None or refresh:
            creds = self.token_provider(refresh=refresh)
            register_secret(creds.access_token)
            self._credentials = creds
        return self._credentials

    def _metadata(self) -> tuple[tuple[str, str], ...]:
        creds = self.credentials()
        return (
            ("accesstoken", creds.access_token),
            ("instanceurl", creds.instance_url),
            ("tenantid", creds.tenant_id),
        )

    @property
    def org(self) -> str:
        return self._credentials.tenant_id if self._credentials else "unknown org"

    def _fetch_schema(self, schema_id: str) -> str:
        info = self.stub.GetSchema(
            pb2.SchemaRequest(schema_id=schema_id),
            metadata=self._metadata(),
            timeout=self.settings.timeout,
        )
        return str(info.schema_json)

    def subscribe(self, channel: str, replay: Replay | None = None) -> Subscription:
        """A subscription to ``channel`` starting at ``replay`` (default LATEST); iterate it
        for :class:`ChangeEvent` and :class:`Keepalive` items and :meth:`Subscription.ack`
        what is stored."""
        return Subscription(self, channel, replay or Replay.latest())

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> PubSubSubscriber:
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()


class _Reconnect(Exception):
    """The stream broke after delivering something: subscribe again at once."""


class _TokenRefused(Exception):
    """UNAUTHENTICATED: log in again and subscribe again."""

    def __init__(self, detail: str, progressed: bool) -> None:
        super().__init__(detail)
        self.detail = detail
        self.progressed = progressed


class Subscription:
    """An iterator of :class:`ChangeEvent` and :class:`Keepalive` for one channel that
    re-subscribes by itself: after the last acknowledged replay id, or where it started
    when nothing is acknowledged yet."""

    def __init__(self, subscriber: PubSubSubscriber, channel: str, replay: Replay) -> None:
        self.subscriber = subscriber
        self.channel = channel
        self.start = replay
        self.acknowledged: bytes | None = None
        #: Subscribe calls made (1 + re-subscriptions)
        self.subscriptions = 0
        self.token_refreshes = 0
        self._call: Any = None
        self._closed = False

    def ack(self, replay_id: bytes) -> None:
        """Everything delivered up to ``replay_id`` is stored durably: a re-subscription
        resumes after it."""
        if replay_id:
            self.acknowledged = bytes(replay_id)

    def resume_point(self) -> Replay:
        if self.acknowledged:
            return Replay.after(self.acknowledged)
        return self.start

    def close(self) -> None:
        self._closed = True
        if self._call is not None:
            self._call.cancel()

    def __iter__(self) -> Iterator[ChangeEvent | Keepalive]:
        policy = self.subscriber.settings.retry
        backoff = wait_exponential_jitter(
            initial=policy.initial_wait, max=policy.max_wait, jitter=policy.jitter
        )
        failures = RetryCallState(Retrying(), None, (), {})  # consecutive transient failures
        failures.attempt_number = 0
        first_failure = 0.0
        refreshed_without_progress = False
        while not self._closed:
            try:
                for item in self._stream(self.resume_point()):
                    failures.attempt_number = 0
                    refreshed_without_progress = False
                    yield item
                return  # closed by the caller
            except _Reconnect:
                failures.attempt_number = 0
            except _TokenRefused as refused:
                if refreshed_without_progress and not refused.progressed:
                    raise AuthError(
                        SYSTEM,
                        f"{self.channel} (org {self.subscriber.org}): the Pub/Sub API refused "
                        f"a freshly issued access token ({refused.detail}). Check that the "
                        "integration user is API Enabled and that SALESFORCE_LOGIN_URL logs "
                        "in to the org the Pub/Sub API serves.",
                    ) from None
                log.info("%s: access token refused; logging in again", self.channel)
                self.subscriber.credentials(refresh=True)
                self.token_refreshes += 1
                refreshed_without_progress = True
            except TransientError as exc:
                now = time.monotonic()
                if failures.attempt_number == 0:
                    first_failure = now
                failures.attempt_number += 1
                if (
                    failures.attempt_number >= policy.max_attempts
                    or now - first_failure >= policy.max_seconds
                ):
                    raise SystemUnavailableError(
                        SYSTEM,
                        f"{self.channel} (org {self.subscriber.org}): the Pub/Sub API at "
                        f"{self.subscriber.target} still fails after "
                        f"{failures.attempt_number} attempts: {exc}. Check "
                        "SALESFORCE_PUBSUB_URL and the network; the listener resumes from its "
                        "stored replay id, and polling covers the time it was down.",
                        status=exc.status,
                    ) from None
                delay = float(backoff(failures))
                log.warning(
                    "%s: subscription attempt %d failed (%s); retrying in %.2fs",
                    self.channel,
                    failures.attempt_number,
                    exc,
                    delay,
                )
                self.subscriber.sleep(delay)

    def _stream(self, start: Replay) -> Iterator[ChangeEvent | Keepalive]:
        sub = self.subscriber
        batch = sub.settings.pubsub_batch
        requests: queue.SimpleQueue[pb2.FetchRequest | None] = queue.SimpleQueue()

        def outgoing() -> Iterator[pb2.FetchRequest]:
            while True:
                request = requests.get()
                if request is None:
                    return
                sub.requested.append(request.num_requested)
                yield request

        first = pb2.FetchRequest(
            topic_name=self.channel,
            replay_preset=getattr(pb2, start.preset),
            num_requested=batch,
        )
        if start.preset == "CUSTOM":
            first.replay_id = start.replay_id
        progressed = False
        pending = batch
        try:
            requests.put(first)
            self.subscriptions += 1
            self._call = sub.stub.Subscribe(outgoing(), metadata=sub._metadata())
            for response in self._call:
                if not response.events and response.latest_replay_id:
                    yield Keepalive(self.channel, bytes(response.latest_replay_id))
                for consumer in response.events:
                    progressed = True
                    yield self._decode(consumer)
                # The caller has taken every event of this response: once half the batch
                # has arrived, ask for what there is room for. ``pending`` is counted here
                # (requested minus delivered), not taken from the response's
                # pending_num_requested, which cannot know of requests still in flight:
                # so never more than the batch is outstanding.
                pending = max(pending - len(response.events), 0)
                if pending <= batch // 2:
                    more = batch - pending
                    requests.put(pb2.FetchRequest(topic_name=self.channel, num_requested=more))
                    pending = batch
        except grpc.RpcError as exc:
            if self._closed and exc.code() == grpc.StatusCode.CANCELLED:
                return
            raise self._classify(exc, start, progressed) from None
        finally:
            requests.put(None)
            if self._call is not None:
                self._call.cancel()
                self._call = None

    def _decode(self, consumer: Any) -> ChangeEvent:
        event = consumer.event
        schema, parsed = self.subscriber.schemas.get(event.schema_id)
        try:
            record = decode_payload(parsed, event.payload)
            return to_change_event(
                self.channel, bytes(consumer.replay_id), event.id, event.schema_id, schema, record
            )
        except EventDecodeError as exc:
            raise PermanentError(
                SYSTEM,
                f"{self.channel} (org {self.subscriber.org}): event {event.id} (replay id "
                f"{bytes(consumer.replay_id).hex()}) does not decode with its schema "
                f"{event.schema_id}: {exc}. Nothing after it is acknowledged; the poll reads "
                "the records meanwhile. Report the event id with the schema.",
            ) from None

    def _classify(self, exc: grpc.RpcError, start: Replay, progressed: bool) -> Exception:
        code = exc.code()
        detail = redact(str(exc.details() or ""))
        error_code = ""
        trailers = exc.trailing_metadata() or ()
        for key, value in trailers:
            if key == ERROR_CODE_TRAILER:
                error_code = value if isinstance(value, str) else value.decode()
        where = f"{self.channel} (org {self.subscriber.org})"
        said = f"{code.name}{f' {error_code}' if error_code else ''}: {detail}"
        if error_code in REPLAY_ID_ERRORS or (
            code == grpc.StatusCode.INVALID_ARGUMENT and "replay" in detail.lower()
        ):
            return ReplayIdExpired(self.channel, start.replay_id, self.subscriber.org, said)
        if code == grpc.StatusCode.UNAUTHENTICATED:
            return _TokenRefused(said, progressed)
        if code == grpc.StatusCode.UNAVAILABLE and any(
            word in detail.lower() for word in ("certificate", "ssl", "handshake")
        ):
            return PermanentError(
                SYSTEM,
                f"{where}: TLS verification of {self.subscriber.target} failed ({said}). If "
                "the server uses a private CA, point HUB_CA_BUNDLE at its PEM bundle; "
                "verification is never switched off.",
            )
        if code in TRANSIENT_CODES:
            if progressed:
                log.warning("%s: stream broke (%s); subscribing again", where, said)
                return _Reconnect(said)
            return TransientError(SYSTEM, f"{where}: {said}")
        if code == grpc.StatusCode.PERMISSION_DENIED:
            return PermanentError(
                SYSTEM,
                f"{where}: subscribing was refused ({said}). Give the integration user API "
                "Enabled and View All (or View All Data) on the object, and select the "
                "object for Change Data Capture in Setup.",
            )
        if code == grpc.StatusCode.NOT_FOUND and "schema" in f"{error_code} {detail}".lower():
            return PermanentError(
                SYSTEM,
                f"{where}: the Pub/Sub API has no schema for an event of the channel ({said}). "
                "Subscribe again: events published with a retired schema cannot be decoded.",
            )
        if code == grpc.StatusCode.NOT_FOUND:
            return PermanentError(
                SYSTEM,
                f"{where}: no such channel ({said}). Select the object for Change Data "
                "Capture in Setup (Integrations > Change Data Capture), and check the "
                "object's API name.",
            )
        return PermanentError(SYSTEM, f"{where}: the Pub/Sub API refused the subscription ({said})")


__all__ = [
    "ChangeEvent",
    "ConnectorError",
    "Credentials",
    "Keepalive",
    "OAuthTokenProvider",
    "PubSubSubscriber",
    "Replay",
    "ReplayIdExpired",
    "Subscription",
    "TokenProvider",
]
