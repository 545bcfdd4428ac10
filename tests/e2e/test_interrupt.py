"""Ctrl+C and SIGTERM stop `hub sync` (issue 20, item 5; SIGTERM takes the same handler,
tested in process below): the command exits 130 within
seconds, saying so; the Dagster run is a failed run naming the interruption (it was a
green, complete run before: Dagster turned the interrupt into a step retry); and the next
sync resumes from the cursors and the outbox and delivers everything."""

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from dagster import DagsterInstance, DagsterRunStatus

from hub.store.migrate import upgrade
from sandbox.runner import running_sandbox

ROOT = Path(__file__).resolve().parents[2]
HUB = str(ROOT / ".venv" / "bin" / "hub")


def _interrupted_sync(env: dict[str, str], store: str, signum: int) -> tuple[int, str]:
    """Start `hub sync`, send ``signum`` once it has committed golden records."""
    engine = sa.create_engine(store)
    with engine.connect() as conn:
        before = conn.execute(sa.text("SELECT count(*) FROM golden_records")).scalar_one()
    child = subprocess.Popen(
        [HUB, "sync"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and child.poll() is None:
        try:
            with engine.connect() as conn:
                count = conn.execute(sa.text("SELECT count(*) FROM golden_records"))
                if count.scalar_one() > before:
                    break
        except sa.exc.OperationalError:
            pass  # locked by the sync's transaction: ask again
        time.sleep(0.2)
    engine.dispose()
    sent = time.monotonic()
    child.send_signal(signum)
    _, err = child.communicate(timeout=120)
    assert time.monotonic() - sent < 60, "the sync did not stop"
    return child.returncode, err


@pytest.mark.slow
def test_ctrl_c_stops_a_sync_that_the_next_one_resumes(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'hub.sqlite'}"
    home = tmp_path / "dagster_home"
    with running_sandbox(tmp_path / "sb", seed=8, customers=60) as sb:
        env = {
            **os.environ,
            **sb.env,
            "HUB_DATA_DIR": str(tmp_path / "data"),
            "HUB_DATABASE_URL": store,
            "DAGSTER_HOME": str(home),
        }
        upgrade(store)
        code, err = _interrupted_sync(env, store, signal.SIGINT)
        assert code == 130, err[-2000:]
        assert "interrupted: sync_all run" in err and "resume" in err
        assert "Traceback" not in err
        with DagsterInstance.from_config(str(home)) as instance:
            runs = instance.get_run_records()
            assert [r.dagster_run.status for r in runs] == [DagsterRunStatus.FAILURE]
            failures = [
                e.dagster_event.event_specific_data.user_failure_data.description
                for r in runs
                for e in instance.all_logs(r.dagster_run.run_id)
                if e.dagster_event and e.dagster_event.event_type_value == "STEP_FAILURE"
            ]
            assert failures and all("interrupted by the operator" in f for f in failures)
            retried = [
                e
                for r in runs
                for e in instance.all_logs(r.dagster_run.run_id)
                if e.dagster_event and e.dagster_event.event_type_value == "STEP_UP_FOR_RETRY"
            ]
            assert retried == []

        resumed = subprocess.run([HUB, "sync", "--json"], env=env, capture_output=True, text=True)
        assert resumed.returncode == 0, resumed.stderr[-2000:]
        counts = json.loads(resumed.stdout)
        assert sum(c["failed"] for by_entity in counts.values() for c in by_entity.values()) == 0
    engine = sa.create_engine(store)
    with engine.connect() as conn:  # what the interrupted runs planned was all delivered
        pending = conn.execute(
            sa.text("SELECT count(*) FROM outbox WHERE status = 'pending'")
        ).scalar_one()
    engine.dispose()
    assert pending == 0


def test_sigterm_asks_the_run_to_stop_like_ctrl_c() -> None:
    """What a scheduler or `kill` sends: the same request to stop after the current batch."""
    from app.cli.launch import _interruptible
    from app.stop import STOP

    def run() -> bool:
        deadline = time.monotonic() + 20
        while not STOP.is_set() and time.monotonic() < deadline:
            time.sleep(0.05)
        return STOP.is_set()

    before = signal.getsignal(signal.SIGTERM)
    timer = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGTERM))
    timer.start()
    try:
        assert _interruptible(run) == (True, True)
    finally:
        timer.cancel()
    assert signal.getsignal(signal.SIGTERM) == before  # the previous handler is back
    # the request ended with that run: the next run in this process starts normally
    assert not STOP.is_set()
