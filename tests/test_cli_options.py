"""The CLI refuses a misspelt entity, system, finding kind or window at once (exit 2, the
choices and the closest one named), before any run starts: a typo never widens a
command and never ends in a traceback."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from app.cli.main import app


def _launches(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record any job launch (none may happen)."""
    launched: list[str] = []

    def refuse(name: str, *_, **__):
        launched.append(name)
        raise AssertionError(f"{name} launched despite bad input")

    monkeypatch.setattr("app.cli.launch.run_job", refuse)
    return launched


@pytest.mark.parametrize(
    ("args", "option", "said"),
    [
        (["sync", "--system", "sapp"], "--system", "did you mean 'sap'?"),
        (["sync", "--entity", "custmer"], "--entity", "did you mean 'customer'?"),
        (["reconcile", "--system", "salesfroce"], "--system", "did you mean 'salesforce'?"),
        (["findings", "--entity", "invoices"], "--entity", "did you mean 'invoice'?"),
        (["resync", "--entity", "custmer", "--key", "X"], "--entity", "'custmer'; choose from"),
        (["resync", "--entity", "customer", "--key", "X", "--system", "wm"], "--system", ""),
        (["resync", "--from-findings", "--kind", "mismatc"], "--kind", "'mismatch'"),
        (["quarantine", "list", "--system", "pimm"], "--system", "did you mean 'pim'?"),
        (
            ["resync", "--entity", "customer", "--since", "2025-06-30T00:00:00"],
            "--since",
            "has no time zone",
        ),
        (["resync", "--entity", "customer", "--until", "yesterday"], "--until", "not an ISO 8601"),
    ],
)
def test_bad_input_is_refused_before_anything_runs(
    monkeypatch: pytest.MonkeyPatch, args: list[str], option: str, said: str
) -> None:
    launched = _launches(monkeypatch)
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    assert option in result.output and said in result.output
    assert "Traceback" not in result.output
    assert launched == []


def test_retrying_an_entry_that_is_not_open_is_refused_before_any_run(
    tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A mistyped or resolved entry id used to end in "nothing open in quarantine" (exit
    0), read as "done"."""
    from hub.store.migrate import upgrade

    url = f"sqlite:///{tmp_path / 'hub.sqlite'}"
    upgrade(url)
    monkeypatch.setenv("HUB_DATABASE_URL", url)
    launched = _launches(monkeypatch)
    done = CliRunner().invoke(app, ["quarantine", "retry", "5", "7"])
    assert done.exit_code == 1, done.output
    assert "no open quarantine entry 5, 7" in done.output and not launched


def test_resyncing_a_finding_that_is_not_open_is_refused_before_any_run(
    tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unknown or resolved finding id used to end in "nothing sent" (exit 0)."""
    from datetime import UTC, datetime

    from hub.store.db import create_store_engine, session_factory
    from hub.store.migrate import upgrade
    from hub.store.models import Finding

    url = f"sqlite:///{tmp_path / 'hub.sqlite'}"
    upgrade(url)
    now = datetime(2026, 12, 1, tzinfo=UTC)
    with session_factory(create_store_engine(url)).begin() as s:
        s.add(
            Finding(
                id="f-done", entity="customer", key="CUS-1", system="sap", kind="missing",
                severity="high", status="resolved", first_seen=now, last_seen=now,
            )
        )  # fmt: skip
    monkeypatch.setenv("HUB_DATABASE_URL", url)
    launched = _launches(monkeypatch)
    args = ["resync", "--from-findings", "--finding", "f-nope", "--finding", "f-done"]
    done = CliRunner().invoke(app, args)
    assert done.exit_code == 1, done.output
    assert "f-nope (no such finding), f-done (resolved)" in done.output and not launched


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["sandbox", "fault", "sapp", "503"], "'sapp' (did you mean 'sap'?)"),
        (["sandbox", "fault", "sap", "504"], "'504' (did you mean '503'?)"),
        (["sandbox", "up", "--customers", "0"], "--customers"),
    ],
)
def test_the_sandbox_refuses_a_misspelt_system_mode_or_size(
    args: list[str], said: str, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A misspelt system read as "no running sapp emulator ... is `hub sandbox up`
    running?"; `--customers 0` ended in a ValueError traceback from the seeding."""
    monkeypatch.setenv("HUB_DATA_DIR", str(tmp_path))
    done = CliRunner().invoke(app, args)
    assert done.exit_code == 2, done.output
    assert said in " ".join(done.output.split()), done.output
