"""What `hub sync` says about quarantine (issue 20, item 7): no line per quarantine event
(records that only wait for a later batch of the same run used to print dozens of alarming
lines while the table said 0), one line per record that stays quarantined at the end, the
table's column counting exactly those, and each pass counting one attempt (an inbound
record refused by the extract was retried again by the same run: two per run)."""

import re
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from app.cli.main import app
from app.cli.records import SHOWN
from hub.store.migrate import upgrade
from sandbox.runner import running_sandbox

LISTED = re.compile(r"^  \[(\d+)\] (\S+) (\S+) (\S+) \((inbound|outbound), attempt (\d+)\)")


def _sync(runner: CliRunner) -> tuple[int, list[tuple[str, ...]]]:
    result = runner.invoke(app, ["sync"])
    assert result.exit_code == 0, result.output
    assert not any(line.startswith("quarantined ") for line in result.output.splitlines())
    header, *rows = [
        line.split()
        for line in result.output.splitlines()
        if re.match(r"^\w+ +\w+ +\d", line) or line.startswith("system ")
    ]
    column = header.index("quarantined")
    in_table = sum(int(row[column]) for row in rows)
    listed = [m.groups() for m in map(LISTED.match, result.output.splitlines()) if m]
    stay = re.search(r"^(\d+) record\(s\) stay in quarantine", result.output, re.M)
    assert stay is not None and int(stay.group(1)) == in_table, result.output
    assert len(listed) == min(in_table, SHOWN)
    return in_table, listed


@pytest.mark.slow
def test_sync_lists_what_stays_quarantined_once_with_one_attempt_per_pass(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = f"sqlite:///{tmp_path / 'hub.sqlite'}"
    upgrade(store)
    with running_sandbox(tmp_path / "sb", seed=42, customers=20) as sb:
        for name, value in {
            **sb.env,
            "HUB_DATA_DIR": str(tmp_path / "data"),
            "HUB_DATABASE_URL": store,
            "DAGSTER_HOME": str(tmp_path / "dagster_home"),
        }.items():
            monkeypatch.setenv(name, value)
        runner = CliRunner()
        first, listed = _sync(runner)
        assert first >= 1, "the seeded WMS orphan stays in quarantine"
        assert len({row[0] for row in listed}) == len(listed)  # one line per record
        second, again = _sync(runner)
    attempts = {row[0]: int(row[5]) for row in listed if row[4] == "inbound"}
    assert attempts and all(n == 1 for n in attempts.values())
    for row in again:
        if row[0] in attempts:
            assert int(row[5]) == 2, row  # one more pass, one more attempt
    engine = sa.create_engine(store)
    with engine.connect() as conn:
        still = conn.execute(
            sa.text("SELECT count(*) FROM quarantine WHERE status = 'open'")
        ).scalar_one()
    engine.dispose()
    assert still == second
