"""Live progress (issue 20, item 8): the sync steps stream their counts into the Dagster
run's log as they go, and the CLI draws them on a terminal while the run executes (and
stays quiet when stderr is not a terminal)."""

import io
import threading
import time

from dagster import DagsterInstance, materialize
from rich.console import Console

from app.cli.launch import _wait
from app.defs.resources import HubStoreResource
from app.defs.sync import build_sync_assets
from app.progress import BOARD, step_reporter
from hub.sync.engine import Counts
from tests.sync.conftest import account
from tests.sync.test_sync_assets import Holder


class _Log:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def info(self, text: str) -> None:
        self.lines.append(text)


class _Context:
    def __init__(self) -> None:
        self.log = _Log()


def test_a_step_logs_its_counts_every_few_seconds_not_every_batch() -> None:
    context = _Context()
    report = step_reporter(context, every=0.2)
    BOARD.clear()
    for n in range(1, 40):
        report("salesforce", "customer", Counts(read=n * 10, created=n))
        time.sleep(0.02)
    assert 2 <= len(context.log.lines) <= 6  # ~0.8 s of batches: a line per 0.2 s
    last = context.log.lines[-1]
    assert last.startswith("salesforce customer: read ") and "records/s" in last
    (line,) = BOARD.lines()
    assert line.counts["read"] == 390 and line.written == 39


def _busy_run(seconds: float) -> threading.Thread:
    def work() -> None:
        BOARD.update("extract", "sap", "invoice", Counts(read=5))
        time.sleep(seconds)
        BOARD.update("extract", "sap", "invoice", Counts(read=500))
        BOARD.update("push", "sap", "invoice", Counts(updated=20))
        time.sleep(seconds)

    return threading.Thread(target=work)


def test_a_terminal_sees_the_board_and_a_pipe_sees_nothing() -> None:
    shown = io.StringIO()
    worker = _busy_run(0.6)
    worker.start()
    _wait(worker, True, Console(file=shown, force_terminal=True, width=120))
    assert "sap" in shown.getvalue() and "invoice" in shown.getvalue()
    assert "/s" in shown.getvalue() and "Ctrl+C" in shown.getvalue()

    piped = io.StringIO()
    worker = _busy_run(0.3)
    worker.start()
    _wait(worker, True, Console(file=piped, force_terminal=False))
    assert piped.getvalue() == ""


def test_the_sync_steps_stream_progress_into_the_run_log(setup, monkeypatch) -> None:
    make, crm, erp, engine = setup
    specs = list(make().specs.values())
    for n in range(5):
        crm.put(account(f"Acme {n} GmbH"))
    monkeypatch.setattr("app.progress.LOG_EVERY", 0.0)
    monkeypatch.setattr(
        "hub.sync.engine.load_code_lists",
        lambda _: {"terms": {"net30": "NT30", "net60": "NT60", "due_on_receipt": "NT00"}},
    )
    monkeypatch.setattr("hub.sync.engine.load_specs", lambda _: specs)
    resources = {
        "hub_store": HubStoreResource(database_url=engine.url.render_as_string(False)),
        "salesforce": Holder(crm),
        "sap": Holder(erp),
    }
    BOARD.clear()
    with DagsterInstance.ephemeral() as instance:
        result = materialize(build_sync_assets(specs), resources=resources, instance=instance)
        logs = [e.user_message for e in instance.all_logs(result.run_id)]
    assert result.success
    progress = [m for m in logs if "records/s" in m]
    reads = [m for m in progress if m.startswith("salesforce customer: read ")]
    assert len(reads) >= 2, progress  # a line per batch after the first: 4, 5 read
    pushed = {(line.system, line.entity): line.written for line in BOARD.lines()}
    assert pushed[("sap", "customer")] == 5  # the push step reported to the board too
