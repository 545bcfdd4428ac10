"""A lease in the hub store so two syncs of the same scope never run at once.

Dagster's tag concurrency limits already queue runs of the same scope; this lock is the
backstop for anything launched outside Dagster's queue (two CLI calls, two deployments).
The second caller waits, says whom it is waiting for, and gives up with a clear error
after ``wait_seconds``. Leases expire, so a SIGKILLed holder cannot block forever."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

from sqlalchemy import Engine, delete, select, update
from sqlalchemy.exc import IntegrityError

from hub.store.db import session_factory
from hub.store.models import Lock, utcnow

log = logging.getLogger("hub.sync")


class LockBusyError(RuntimeError):
    pass


def holder_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@contextmanager
def store_lock(
    engine: Engine,
    name: str,
    *,
    ttl_seconds: float = 600,
    wait_seconds: float = 300,
    poll_seconds: float = 0.5,
    holder: str | None = None,
) -> Iterator[None]:
    sessions = session_factory(engine)
    me = holder or holder_name()
    deadline = time.monotonic() + wait_seconds
    announced = False
    while True:
        now = utcnow()
        try:
            with sessions.begin() as s:
                s.execute(delete(Lock).where(Lock.name == name, Lock.expires_at < now))
                s.add(
                    Lock(
                        name=name,
                        holder=me,
                        acquired_at=now,
                        expires_at=now + timedelta(seconds=ttl_seconds),
                    )
                )
            break
        except IntegrityError:
            with sessions() as s:
                current = s.get(Lock, name)
            if current is None:
                continue
            if _holder_is_dead(current.holder):
                log.warning(
                    "lock %r was held by %s, which is no longer running: taking it over",
                    name,
                    current.holder,
                )
                with sessions.begin() as s:
                    s.execute(delete(Lock).where(Lock.name == name, Lock.holder == current.holder))
                continue
            message = (
                f"waiting for lock {name!r}: held by {current.holder} since "
                f"{current.acquired_at.isoformat()} (expires {current.expires_at.isoformat()})"
            )
            if time.monotonic() > deadline:
                raise LockBusyError(
                    f"gave up after {wait_seconds:.0f}s {message.removeprefix('waiting for ')}; "
                    "another sync of this scope is running"
                ) from None
            if not announced:
                log.warning(message)
                announced = True
            time.sleep(poll_seconds)
    stop = threading.Event()
    beat = threading.Thread(
        target=_heartbeat,
        args=(engine, name, me, ttl_seconds, stop),
        name=f"lock-heartbeat:{name}",
        daemon=True,
    )
    beat.start()
    try:
        yield
    finally:
        stop.set()
        beat.join(timeout=5)
        with sessions.begin() as s:
            s.execute(delete(Lock).where(Lock.name == name, Lock.holder == me))


def _holder_is_dead(holder: str) -> bool:
    """A holder on this host whose process is gone (a SIGKILLed sync) cannot release its
    lease: waiting out the TTL would stall the rerun for minutes for nothing. Holders on
    other hosts are judged by their lease only."""
    host, _, pid = holder.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _heartbeat(
    engine: Engine, name: str, holder: str, ttl_seconds: float, stop: threading.Event
) -> None:
    """Keep the lease alive while its holder works (a sync may outlast the TTL); a holder
    that dies stops renewing, so its lease lapses and the next sync takes over."""
    while not stop.wait(ttl_seconds / 3):
        try:
            renew(engine, name, ttl_seconds, holder)
        except Exception:  # a missed beat is retried; the lease has 2/3 of its TTL left
            log.warning("could not renew lock %r", name, exc_info=True)


def renew(engine: Engine, name: str, ttl_seconds: float = 600, holder: str | None = None) -> None:
    with session_factory(engine).begin() as s:
        s.execute(
            update(Lock)
            .where(Lock.name == name, Lock.holder == (holder or holder_name()))
            .values(expires_at=utcnow() + timedelta(seconds=ttl_seconds))
        )


def live_leases(engine: Engine, prefix: str) -> list[tuple[str, str]]:
    """(name, holder) of the unexpired leases whose name starts with ``prefix``."""
    with session_factory(engine)() as s:
        rows = s.execute(
            select(Lock.name, Lock.holder).where(
                Lock.name.startswith(prefix, autoescape=True), Lock.expires_at > utcnow()
            )
        )
        return [(name, holder) for name, holder in rows]
