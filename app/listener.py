"""The change-event listener behind `hub listen` (app.cli.listen), one long-running process.

- a thread per Salesforce change-event channel of every object the mappings map for
  Salesforce: it subscribes after the replay id stored in ``event_replay_position`` (else
  at LATEST), stores each event and its replay id in one transaction, then acknowledges it;
- the SAP business event webhook (hub.events.receiver) served with uvicorn;
- a processing loop (every half second, or at once when events were stored) that applies
  the inbox through the sync engine (hub.events.processor) and reports each applied batch
  to Dagster as a runless asset event of the entity's golden asset, so the UI shows it.
  Salesforce events of the hub's own writes (the integration user of the token's identity
  URL as ``commitUser``, the hub's client in ``changeOrigin``, only what the hub wrote
  changed) are marked ``echo`` without a read-back (:meth:`Listener.salesforce_identity`).

An expired replay id (or a subscription that cannot go on) is a gap: the listener says that
the poll closes it, runs the entity's poll once and subscribes again from LATEST. Polling
schedules stay on as the safety net either way. SIGTERM or Ctrl-C stops it cleanly (exit
code 0); a configuration error exits with 2, a failure with 1.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import queue
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import Engine

from connectors.errors import AuthError, ConnectorError, PermanentError
from connectors.registry import configured_systems
from connectors.salesforce import SYSTEM as SALESFORCE
from connectors.salesforce import SalesforceSettings
from connectors.salesforce_pubsub.events import ChangeEvent, channel_for, replay_id_bytes
from connectors.salesforce_pubsub.subscriber import (
    Keepalive,
    OAuthTokenProvider,
    PubSubSubscriber,
    Replay,
    ReplayIdExpired,
    Subscription,
)
from hub.events.inbox import InboxEvent, ReplayPosition, pending, replay_position, store_events
from hub.events.processor import BatchStats, EventProcessor, HubIdentity
from hub.events.receiver import DEFAULT_PATH, ReceiverAuth, create_receiver
from hub.mapping.spec import MAPPINGS_DIR, MappingSpec, load_all
from hub.settings import EventSettings
from hub.sync.engine import SyncEngine
from hub.sync.lock import store_lock
from hub.systems import connect

log = logging.getLogger("hub.listen")

#: seconds between processing passes when nothing wakes the loop
TICK = 0.5
#: seconds between health lines
HEALTH_EVERY = 60.0


def _json_safe(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def inbox_event(event: ChangeEvent, entity: str) -> InboxEvent:
    """The inbox row of one Salesforce change event."""
    return InboxEvent(
        system=SALESFORCE,
        event_id=event.event_id,
        event_type=event.channel,
        entity=entity,
        change_type=event.change_type,
        record_keys=list(event.record_ids),
        payload=_json_safe(
            {
                "values": event.flat_values(),
                "nulled_fields": list(event.nulled_fields),
                "commit_timestamp": event.commit_timestamp.isoformat(),
                "commit_user": event.commit_user,
                "change_origin": event.change_origin,
                "transaction_key": event.transaction_key,
                "sequence_number": event.sequence_number,
            }
        ),
        changed_fields=list(event.changed_fields),
        replay_id=event.replay_text,
        channel=event.channel,
    )


def salesforce_channels(specs: Sequence[MappingSpec]) -> dict[str, str]:
    """channel -> hub entity, for every object the mappings map for Salesforce."""
    return {
        channel_for(spec.object): spec.entity
        for spec in specs
        if spec.system == SALESFORCE and spec.object
    }


@dataclass
class Totals:
    events: int = 0
    applied: int = 0
    batches: int = 0
    gaps: int = 0
    last_event: datetime | None = None
    errors: list[str] = field(default_factory=list)


class Listener:
    """The listener's parts; :meth:`run` blocks until :meth:`stop`."""

    def __init__(
        self,
        store: Engine,
        env: Mapping[str, str],
        settings: EventSettings,
        *,
        specs: Sequence[MappingSpec] | None = None,
        salesforce: bool = True,
        sap: bool = True,
        register_sandbox: bool | None = None,
        report: Callable[[BatchStats], None] | None = None,
        tick: float = TICK,
        health_every: float = HEALTH_EVERY,
    ) -> None:
        self.store = store
        self.env = dict(env)
        self.settings = settings
        self.specs = list(specs) if specs is not None else load_all(MAPPINGS_DIR)[0]
        self.systems = configured_systems(self.env)
        self.want_salesforce = salesforce and SALESFORCE in self.systems
        self.want_sap = sap and "sap" in self.systems
        self.register_sandbox = register_sandbox
        self.report = report
        self.tick = tick
        self.health_every = health_every
        self.stopping = threading.Event()
        self.wake = threading.Event()
        self.polls: queue.SimpleQueue[tuple[str, str, str]] = queue.SimpleQueue()
        self.totals = Totals()
        self.threads: list[threading.Thread] = []
        self.subscriptions: dict[str, Subscription] = {}
        self._positions: dict[str, bytes] = {}
        self._server: Any = None
        self._subscriber: PubSubSubscriber | None = None
        self._tokens: OAuthTokenProvider | None = None
        self.receiver_url: str | None = None
        self.fatal: BaseException | None = None
        self.ready = threading.Event()

    # -- lifecycle ------------------------------------------------------------------------
    def run(self) -> None:
        connectors = {s: connect(s, self.env, self.specs) for s in self.systems}
        self.engine = SyncEngine(self.store, connectors, specs=self.specs)
        self.processor = EventProcessor(self.engine, batch_size=self.settings.batch)
        # the echoes of the hub's own Salesforce writes are told by their header
        self.processor.identities[SALESFORCE] = self.salesforce_identity
        try:
            self._start_salesforce()
            self._start_sap()
            self._drain_outbox()
            self.ready.set()
            log.info(
                "listening: %d Salesforce channels, SAP webhook %s; polling stays on as the "
                "safety net",
                len(self.subscriptions),
                self.receiver_url or "off",
            )
            self._loop()
        finally:
            self._shutdown(connectors)

    def stop(self) -> None:
        self.stopping.set()
        self.wake.set()
        for sub in list(self.subscriptions.values()):
            sub.close()
        if self._server is not None:
            self._server.should_exit = True

    def _shutdown(self, connectors: Mapping[str, Any]) -> None:
        self.stop()
        for thread in self.threads:
            thread.join(timeout=10)
        if self._subscriber is not None:
            self._subscriber.close()
        if self._tokens is not None:
            self._tokens.close()
        for connector in connectors.values():
            connector.close()
        log.info(
            "stopped: %d events stored, %d applied in %d batches",
            self.totals.events,
            self.totals.applied,
            self.totals.batches,
        )

    def _thread(self, name: str, target: Callable[[], None]) -> None:
        def guarded() -> None:
            try:
                target()
            except BaseException as exc:  # a part that dies stops the listener
                if not self.stopping.is_set():
                    log.exception("%s failed; stopping the listener", name)
                    self.fatal = exc
                    self.stop()

        thread = threading.Thread(target=guarded, name=name, daemon=True)
        thread.start()
        self.threads.append(thread)

    # -- Salesforce -----------------------------------------------------------------------
    def _start_salesforce(self) -> None:
        if not self.want_salesforce:
            return
        from connectors.salesforce_pubsub.settings import settings_from_env

        sf: SalesforceSettings = settings_from_env(self.env)
        self._tokens = OAuthTokenProvider(sf)
        self._subscriber = PubSubSubscriber(sf, self._tokens)
        for channel, entity in salesforce_channels(self.specs).items():
            self._thread(f"listen:{channel}", functools.partial(self._channel, channel, entity))

    def salesforce_identity(self) -> HubIdentity | None:
        """The integration user (from the token's identity URL, once logged in) and the
        client the hub's REST calls name: an event with both in its header, changing only
        what the hub wrote, is the hub's own write (hub.events.processor)."""
        tokens = self._tokens
        if tokens is None or not tokens.user_id:
            return None
        return HubIdentity(user_id=tokens.user_id, client=tokens.client)

    def _start_replay(self, channel: str) -> Replay:
        with self.store.connect() as conn:
            stored = replay_position(conn, SALESFORCE, channel)
        if stored:
            return Replay.after(replay_id_bytes(stored))
        log.info(
            "%s: no stored replay id, subscribing from LATEST (changes made before now reach "
            "the hub through the poll)",
            channel,
        )
        return Replay.latest()

    def _channel(self, channel: str, entity: str) -> None:
        assert self._subscriber is not None
        start = self._start_replay(channel)
        while not self.stopping.is_set():
            sub = self._subscriber.subscribe(channel, start)
            self.subscriptions[channel] = sub
            log.info("%s: subscribed %s", channel, start.describe())
            try:
                for item in sub:
                    if self.stopping.is_set():
                        return
                    if isinstance(item, ChangeEvent):
                        self._store_change(channel, entity, item)
                        sub.ack(item.replay_id)
                    elif isinstance(item, Keepalive) and item.latest_replay_id:
                        # every event given so far is stored: the stream's position is
                        # this channel's progress (a restart resumes here, not at LATEST)
                        if item.latest_replay_id != self._positions.get(channel):
                            self._store_position(channel, item.latest_replay_id)
                            self._positions[channel] = item.latest_replay_id
                        sub.ack(item.latest_replay_id)
                return
            except ReplayIdExpired as exc:
                self._gap(channel, entity, f"replay id expired ({exc})")
            except (PermanentError, AuthError) as exc:
                # retrying cannot help (no Change Data Capture on the object, a refused
                # credential): this channel stops, the others go on, the poll covers it
                self.totals.errors.append(str(exc))
                log.error(
                    "%s: stopped (%s); changes of %s reach the hub through the poll until "
                    "the listener is restarted",
                    channel,
                    exc,
                    entity,
                )
                return
            except ConnectorError as exc:
                if self.stopping.is_set():
                    return
                self._gap(channel, entity, f"subscription failed ({exc})")
                if self.stopping.wait(5):
                    return
            start = Replay.latest()

    def _gap(self, channel: str, entity: str, why: str) -> None:
        self.totals.gaps += 1
        log.warning(
            "%s: %s: events may have been missed; the %s poll closes the gap (running it "
            "now), then the listener subscribes again from LATEST",
            channel,
            why,
            entity,
        )
        with self.store.begin() as conn:  # forget the position: resubscribe at LATEST
            from hub.events.inbox import POSITIONS

            conn.execute(
                POSITIONS.delete().where(
                    POSITIONS.c.system == SALESFORCE, POSITIONS.c.channel == channel
                )
            )
        self.polls.put((SALESFORCE, entity, why))
        self.wake.set()

    def _store_change(self, channel: str, entity: str, event: ChangeEvent) -> None:
        row = inbox_event(event, entity)
        position = ReplayPosition(SALESFORCE, channel, event.replay_text)
        with self.store.begin() as conn:
            new = store_events(conn, [row], position)
        if new:
            self.totals.events += 1
            self.totals.last_event = datetime.now(UTC)
            log.info(
                "%s: %s %s stored (replay %s)",
                channel,
                event.change_type,
                ",".join(event.record_ids),
                event.replay_text,
            )
            self.wake.set()

    def _store_position(self, channel: str, replay_id: bytes) -> None:
        with self.store.begin() as conn:
            store_events(conn, [], ReplayPosition(SALESFORCE, channel, replay_id.hex()))

    # -- SAP ------------------------------------------------------------------------------
    def _start_sap(self) -> None:
        if not self.want_sap:
            return
        sandbox = self._is_sandbox() if self.register_sandbox is None else self.register_sandbox
        s = self.settings
        if not s.has_credentials:
            if not sandbox:
                log.warning(
                    "SAP webhook off: set HUB_EVENTS_SECRET (or HUB_EVENTS_USER and "
                    "HUB_EVENTS_PASSWORD); the webhook never runs open"
                )
                return
            s.secret = secrets.token_urlsafe(24)  # this session's, for the sandbox only
        auth = ReceiverAuth(
            secret=s.secret or None, user=s.user or None, password=s.password or None
        )
        _check_free(s.host, s.port)
        import uvicorn

        app = create_receiver(self.store, auth, on_stored=self._sap_stored)

        class Server(uvicorn.Server):
            @contextlib.contextmanager
            def capture_signals(self) -> Iterator[None]:  # the main thread handles signals
                yield

        config = uvicorn.Config(app, host=s.host, port=s.port, log_level="warning", lifespan="off")
        self._server = Server(config)
        self._thread("listen:sap-webhook", self._server.run)
        deadline = time.monotonic() + 10
        while not self._server.started:
            if self.fatal is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the SAP webhook did not start on {s.host}:{s.port}")
            time.sleep(0.02)
        port = s.port or self._server.servers[0].sockets[0].getsockname()[1]
        self.receiver_url = f"http://{s.host}:{port}{DEFAULT_PATH}"
        if sandbox:
            self._register_with_sandbox()

    def _sap_stored(self, ids: list[str]) -> None:
        self.totals.events += len(ids)
        self.totals.last_event = datetime.now(UTC)
        self.wake.set()

    def _is_sandbox(self) -> bool:
        host = urlsplit(self.env.get("SAP_ODATA_URL", "")).hostname or ""
        return host in ("127.0.0.1", "localhost", "::1")

    def _register_with_sandbox(self) -> None:
        """Point the SAP emulator's event hook at this webhook (the sandbox only)."""
        import httpx

        url = self.env["SAP_ODATA_URL"].rstrip("/") + "/__sandbox/events"
        body: dict[str, Any] = {"subscribers": [self.receiver_url]}
        if self.settings.secret:
            body["secret"] = self.settings.secret
        else:
            body.update(user=self.settings.user, password=self.settings.password)
        try:
            httpx.post(url, json=body, timeout=5).raise_for_status()
            log.info("sandbox SAP emulator sends its business events to %s", self.receiver_url)
        except httpx.HTTPError as exc:
            log.warning("could not register with the sandbox SAP emulator: %s", exc)

    # -- processing -----------------------------------------------------------------------
    def _drain_outbox(self) -> None:
        """Pushes a killed listener planned but did not send go out first."""
        for entity in sorted({e for (_s, e) in self.engine.specs}):
            targets = [t for t in self.engine._systems(entity, None)]
            if not targets:
                continue
            with store_lock(self.store, f"sync:{entity}", wait_seconds=60):
                for target in targets:
                    self.engine.push(target, entity)

    def _loop(self) -> None:
        last_health = time.monotonic()
        while not self.stopping.is_set():
            self.wake.wait(self.tick)
            self.wake.clear()
            if self.stopping.is_set():
                break
            try:
                self._run_polls()
                self.process_once()
            except Exception:  # the events stay pending: the next pass tries again
                log.exception("applying events failed; trying again in 5 s")
                self.stopping.wait(5)
            if time.monotonic() - last_health >= self.health_every:
                last_health = time.monotonic()
                self._health()

    def _run_polls(self) -> None:
        done: set[tuple[str, str]] = set()
        while True:
            try:
                system, entity, why = self.polls.get_nowait()
            except queue.Empty:
                return
            if (system, entity) in done:
                continue
            done.add((system, entity))
            self.engine.errors.clear()
            with store_lock(self.store, f"sync:{entity}", wait_seconds=60):
                self.engine.pull(system, entity)
                for target in self.engine._systems(entity, None):
                    self.engine.push(target, entity)
            outcome = "; ".join(self.engine.errors) or "done"
            log.warning("%s %s: the gap poll ran (%s): %s", system, entity, why, outcome)
            if self.report is not None:
                gap = BatchStats(system=system, entity=entity, polled=True)
                gap.errors.append(f"gap closed by the poll: {why}")
                self.report(gap)

    def process_once(self) -> list[BatchStats]:
        applied = self.processor.process_pending()
        for stats in applied:
            self.totals.batches += 1
            self.totals.applied += stats.events
            pushed = ", ".join(f"{k} {v}" for k, v in sorted(stats.pushed.items())) or "nothing"
            log.info(
                "applied %d %s events from %s: %d read, %d deleted, %d changed, pushed %s, "
                "%d echoes%s; latency p50 %.2fs max %.2fs%s",
                stats.events,
                stats.entity,
                stats.system,
                stats.read,
                stats.deleted,
                stats.changed,
                pushed,
                stats.echoes,
                " (polled)" if stats.polled else "",
                stats.latency_p50,
                stats.latency_max,
                f"; errors: {'; '.join(stats.errors)}" if stats.errors else "",
            )
            if self.report is not None:
                try:
                    self.report(stats)
                except Exception:  # the UI is a view: never stop applying for it
                    log.exception("could not report the batch to Dagster")
        return applied

    def _health(self) -> None:
        with self.store.connect() as conn:
            waiting = len(pending(conn, limit=10_000))
        last = self.totals.last_event.isoformat() if self.totals.last_event else "none yet"
        log.info(
            "health: ok; channels %d, webhook %s, pending %d, stored %d, applied %d, "
            "gaps %d, last event %s",
            len(self.subscriptions),
            "on" if self.receiver_url else "off",
            waiting,
            self.totals.events,
            self.totals.applied,
            self.totals.gaps,
            last,
        )


# -- Dagster --------------------------------------------------------------------------------
def dagster_reporter() -> Callable[[BatchStats], None] | None:
    """Each applied batch as a runless asset event of the entity's golden asset, when
    DAGSTER_HOME names an instance (else None: nothing is reported)."""
    if not os.environ.get("DAGSTER_HOME"):
        return None
    from dagster import AssetMaterialization, DagsterInstance, MetadataValue

    from app.defs.sync import golden_key

    instance = DagsterInstance.get()

    def report(stats: BatchStats) -> None:
        metadata: dict[str, Any] = {
            "source": MetadataValue.text(f"{stats.system} change events"),
            "count": MetadataValue.int(stats.events),
            "keys": MetadataValue.json(stats.keys[:50]),
            "latency_p50": MetadataValue.float(round(stats.latency_p50, 3)),
            "latency_max": MetadataValue.float(round(stats.latency_max, 3)),
            "pushed": MetadataValue.json(stats.pushed),
            "echoes": MetadataValue.int(stats.echoes),
        }
        if stats.polled:
            metadata["gap"] = MetadataValue.text(
                "the poll ran for this entity (overflow event, unknown record, or a listener "
                "gap): it closes the gap"
            )
        if stats.errors:
            metadata["errors"] = MetadataValue.json(stats.errors[:10])
        instance.report_runless_asset_event(
            AssetMaterialization(
                asset_key=golden_key(stats.entity),
                description=f"{stats.events} {stats.system} change events applied by hub listen",
                metadata=metadata,
            )
        )

    return report


def _check_free(host: str, port: int) -> None:
    """Refuse, naming the cause and the fix, when the webhook's address is taken: uvicorn
    logged a traceback and exited its thread, and the listener only said the webhook "did
    not start". Bound and released as uvicorn binds (SO_REUSEADDR), so a port in
    TIME_WAIT is not refused."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise RuntimeError(
                f"the SAP webhook cannot listen on {host}:{port}: {exc.strerror or exc} "
                "(another `hub listen`?); stop what holds it, or set HUB_EVENTS_PORT "
                "(and HUB_EVENTS_HOST) to a free address"
            ) from None
