"""The store lock: a second sync of the same scope waits and says for whom, gives up with
a clear error, takes over a lease whose holder died, and a long holder keeps its lease."""

import logging
import threading
import time
from datetime import timedelta

import pytest
import sqlalchemy as sa

from hub.store import create_store_engine
from hub.store.db import session_factory
from hub.store.migrate import upgrade
from hub.store.models import Lock, utcnow
from hub.sync.lock import LockBusyError, store_lock


@pytest.fixture
def engine(store_url: str) -> sa.Engine:
    upgrade(store_url)
    return create_store_engine(store_url)


def test_second_holder_waits_and_says_for_whom(engine, caplog) -> None:
    order: list[str] = []
    held = threading.Event()

    def first() -> None:
        with store_lock(engine, "sync:customer", holder="run-A"):
            held.set()
            time.sleep(0.6)
            order.append("A done")

    thread = threading.Thread(target=first)
    thread.start()
    held.wait(5)
    with (
        caplog.at_level(logging.WARNING, "hub.sync"),
        store_lock(engine, "sync:customer", holder="run-B", poll_seconds=0.05),
    ):
        order.append("B in")
    thread.join()
    assert order == ["A done", "B in"]
    assert "waiting for lock 'sync:customer': held by run-A" in caplog.text


def test_other_scopes_do_not_wait(engine) -> None:
    with (
        store_lock(engine, "sync:customer", holder="A"),
        store_lock(engine, "sync:invoice", holder="B", wait_seconds=0),
    ):
        pass


def test_gives_up_with_a_clear_error(engine) -> None:
    with (
        store_lock(engine, "sync:customer", holder="run-A"),
        pytest.raises(LockBusyError, match=r"held by run-A .* another sync of this scope"),
        store_lock(engine, "sync:customer", holder="run-B", wait_seconds=0.2, poll_seconds=0.05),
    ):
        pass


def test_lease_of_a_dead_holder_lapses(engine) -> None:
    with session_factory(engine).begin() as s:  # a holder SIGKILLed mid-sync
        s.add(
            Lock(
                name="sync:customer",
                holder="dead:1",
                acquired_at=utcnow() - timedelta(hours=1),
                expires_at=utcnow() - timedelta(seconds=1),
            )
        )
    with (
        store_lock(engine, "sync:customer", holder="alive", wait_seconds=1),
        engine.connect() as conn,
    ):
        assert conn.execute(sa.select(Lock.holder)).scalar_one() == "alive"


def test_a_long_holder_keeps_its_lease(engine) -> None:
    with store_lock(engine, "sync:customer", holder="slow", ttl_seconds=0.6):
        time.sleep(1.5)  # well past the TTL: the heartbeat renewed it
        with (
            pytest.raises(LockBusyError),
            store_lock(
                engine, "sync:customer", holder="eager", wait_seconds=0.1, poll_seconds=0.05
            ),
        ):
            pass


def test_lease_of_a_killed_process_on_this_host_is_taken_over_at_once(engine, caplog) -> None:
    import socket
    import subprocess

    dead = subprocess.Popen(["true"])
    dead.wait()
    with session_factory(engine).begin() as s:
        s.add(
            Lock(
                name="sync:customer",
                holder=f"{socket.gethostname()}:{dead.pid}",
                acquired_at=utcnow(),
                expires_at=utcnow() + timedelta(minutes=10),
            )
        )
    started = time.monotonic()
    with (
        caplog.at_level(logging.WARNING, "hub.sync"),
        store_lock(engine, "sync:customer", holder="rerun", wait_seconds=5),
    ):
        pass
    assert time.monotonic() - started < 2
    assert "no longer running: taking it over" in caplog.text
