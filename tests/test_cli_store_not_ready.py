"""Every command that reads or writes the hub store says, in one line, when the store
cannot be used - nobody ran `hub db upgrade` yet, it is at an older revision, or the
database is down - naming the store (password masked) and the fix, with exit code 2. It
used to print a page of SQLAlchemy traceback (`hub findings` on a fresh checkout)."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from app.cli.main import app
from hub.store.migrate import upgrade

#: read and operator commands that open the store directly (no Dagster run)
COMMANDS = [
    ["findings"],
    ["findings", "--open"],
    ["quarantine", "list"],
    ["quarantine", "show", "1"],
    ["tombstones", "list"],
    ["tombstones", "restore", "customer", "CUS-1"],
    ["outbox", "held"],
    ["outbox", "release"],
    ["metrics"],
]


def _run(args: list[str], url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv("HUB_DATABASE_URL", url)
    monkeypatch.setenv("HUB_DATA_DIR", str(tmp_path / "data"))
    return CliRunner().invoke(app, args)


@pytest.mark.parametrize("args", COMMANDS, ids=" ".join)
def test_a_store_without_schema_names_the_fix(
    args: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'hub.sqlite'}"
    done = _run(args, url, monkeypatch, tmp_path)
    assert done.exit_code == 2, done.output
    assert "Traceback" not in done.output and "sqlalche.me" not in done.output, done.output
    assert "has no schema or an old one" in done.output
    assert "run `hub db upgrade`" in done.output and str(tmp_path) in done.output


def test_a_store_at_an_older_revision_names_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A column the newest migration added is missing: the same one line."""
    url = f"sqlite:///{tmp_path / 'hub.sqlite'}"
    upgrade(url)
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE quarantine DROP COLUMN errors")
    engine.dispose()
    done = _run(["quarantine", "list"], url, monkeypatch, tmp_path)
    assert done.exit_code == 2, done.output
    assert "no such column" in done.output and "run `hub db upgrade`" in done.output


def test_an_unreachable_store_is_named_with_its_password_masked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = "postgresql+psycopg2://hub:s3cr3t-pw@127.0.0.1:9/hub"  # port 9: discard, closed
    done = _run(["findings"], url, monkeypatch, tmp_path)
    assert done.exit_code == 2, done.output
    assert "hub store unreachable at postgresql+psycopg2://hub:***@127.0.0.1:9/hub" in done.output
    assert "s3cr3t-pw" not in done.output and "Traceback" not in done.output


def test_other_database_errors_are_not_hidden(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only an unusable store is turned into the one line: a migrated store answers."""
    url = f"sqlite:///{tmp_path / 'hub.sqlite'}"
    upgrade(url)
    done = _run(["findings"], url, monkeypatch, tmp_path)
    assert done.exit_code == 0, done.output


def test_a_failed_quarantine_retry_run_names_its_cause(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The retry runs as a Dagster job: its failure names the step and the cause, as the
    sync's and the reconciliation's do, not only "see the Dagster UI"."""
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    url = f"sqlite:///{tmp_path / 'hub.sqlite'}"
    done = _run(["quarantine", "retry"], url, monkeypatch, tmp_path)
    assert done.exit_code == 1, done.output
    assert "failed: retry_quarantined: hub store at" in done.output
    assert "run `hub db upgrade`" in done.output


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["db", "upgrade", "--url", "bogus://x"], "'bogus://x' is not one the hub can use"),
        (["db", "upgrade", "--url", "not a url"], "'not a url' is not one the hub can use"),
        (
            ["db", "upgrade", "--url", "postgresql+psycopg2://hub:s3cr3t-pw@127.0.0.1:9/hub"],
            "unreachable at postgresql+psycopg2://hub:***@127.0.0.1:9/hub",
        ),
        (
            ["metrics", "--url", "postgresql+psycopg2://hub:s3cr3t-pw@127.0.0.1:9/hub"],
            "unreachable at postgresql+psycopg2://hub:***@127.0.0.1:9/hub",
        ),
    ],
)
def test_a_bad_url_given_with_url_is_the_one_named(
    args: list[str], named: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store named is the command's own --url, not HUB_DATABASE_URL's (set here to a
    working store, which an earlier version named instead)."""
    good = f"sqlite:///{tmp_path / 'hub.sqlite'}"
    done = _run(args, good, monkeypatch, tmp_path)
    assert done.exit_code == 2, done.output
    assert named in done.output and good not in done.output, done.output
    assert "s3cr3t-pw" not in done.output and "Traceback" not in done.output


def test_a_command_that_never_opens_the_store_is_not_blamed_on_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`hub sandbox`, `hub systems` and `hub mappings` use other databases (the sandbox's
    billing store): their errors are not turned into "run `hub db upgrade`"."""
    from sqlalchemy.exc import OperationalError

    def broken(*_: object, **__: object) -> None:
        raise OperationalError("SELECT 1", {}, Exception("no such table: customers"))

    monkeypatch.setattr("app.cli.mappings.load_all", broken)
    done = _run(["mappings", "check"], "sqlite:///nowhere.sqlite", monkeypatch, tmp_path)
    assert isinstance(done.exception, OperationalError), done.output
    assert "hub db upgrade" not in done.output


def test_a_bad_url_met_in_a_step_is_not_blamed_on_the_hub_store() -> None:
    """A step also builds other systems' engines (billing): ``store_problem``, which
    steps use, leaves an unknown dialect alone; only the CLI, which knows the URL it
    gave, names it as the hub store's."""
    from sqlalchemy.exc import NoSuchModuleError

    from hub.store.db import store_problem, store_url_problem

    exc = NoSuchModuleError("Can't load plugin: sqlalchemy.dialects:bogus")
    assert store_problem(exc, "bogus://x") is None
    assert "'bogus://x' is not one the hub can use" in str(store_url_problem(exc, "bogus://x"))
