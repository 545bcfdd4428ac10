"""The CLI's help reads as plain text, lists the commands in the operator's order, and
every --system / --entity is repeatable - on every command that takes one."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
import typer.main
from typer.testing import CliRunner

from app.cli.main import app

runner = CliRunner()
#: RST that Typer would print as it is: ``literals``, :roles:`x`, `interpreted text`
RST = re.compile(r"``|:[a-z]+:`|`")
OPERATORS_PATH = [
    "sandbox", "db", "mappings", "systems", "sync", "listen", "reconcile", "findings", "resync",
    "quarantine", "tombstones", "outbox", "metrics", "demo",
]  # fmt: skip


def _walk(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    yield path, command
    for name, sub in getattr(command, "commands", {}).items():
        yield from _walk(sub, (*path, name))


COMMANDS = list(_walk(typer.main.get_command(app)))
TAKING = [
    (path, command)
    for path, command in COMMANDS
    if any({"--system", "--entity"} & set(p.opts) for p in command.params)
]


@pytest.mark.parametrize("path", [path for path, _ in COMMANDS], ids=" ".join)
def test_every_help_page_is_plain_text(path: tuple[str, ...]) -> None:
    result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "200"}, prog_name="hub")
    assert result.exit_code == 0, result.output
    assert "Usage: hub" in result.output
    assert not RST.search(result.output), result.output


def test_commands_are_listed_in_the_operators_order() -> None:
    result = runner.invoke(app, ["--help"], env={"COLUMNS": "200"})
    listed = re.findall(r"^│ (\w+) ", result.output, flags=re.MULTILINE)
    assert listed == OPERATORS_PATH


def test_the_commands_taking_a_system_or_an_entity_are_known() -> None:
    assert sorted(" ".join(path) for path, _ in TAKING) == [
        "findings", "outbox release", "quarantine list", "quarantine retry", "reconcile",
        "resync", "sync", "systems check", "tombstones list",
    ]  # fmt: skip


@pytest.mark.parametrize(("path", "command"), TAKING, ids=[" ".join(p) for p, _ in TAKING])
def test_every_system_and_entity_option_takes_two_values(
    path: tuple[str, ...], command: Any
) -> None:
    given = {"--system": ["sap", "wms"], "--entity": ["invoice", "customer"]}
    args: list[str] = []
    expected: dict[str, list[str]] = {}
    for param in command.params:
        for option, values in given.items():
            if option in param.opts:
                assert param.multiple, f"hub {' '.join(path)} {option} is not repeatable"
                args += [part for value in values for part in (option, value)]
                expected[param.name] = values
    with command.make_context(" ".join(path), args) as ctx:
        assert {name: ctx.params[name] for name in expected} == expected


class _Ran:
    """What run_job returns, as far as the CLI reads it."""

    success = True

    def __init__(self, run_id: str, output: Any = None) -> None:
        self.run_id = run_id
        self.output = output

    def get_asset_materialization_events(self) -> list[Any]:
        return []

    def output_for_node(self, _name: str) -> Any:
        return self.output


def test_sync_runs_each_entity_parents_first(monkeypatch: pytest.MonkeyPatch) -> None:
    runs: list[tuple[str, str, int]] = []

    def run_job(name: str, **kwargs: Any) -> _Ran:
        runs.append((name, kwargs["tags"]["hub/entity"], len(kwargs["asset_selection"] or [])))
        return _Ran(f"r{len(runs)}")

    monkeypatch.setattr("app.cli.launch.run_job", run_job)
    args = ["sync", "--entity", "invoice", "--entity", "customer", "-s", "sap", "-s", "billing"]
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    assert [(name, tag) for name, tag, _ in runs] == [
        ("sync_customer", "customer"),
        ("sync_invoice", "invoice"),
    ]
    assert all(selected for _, _, selected in runs)  # limited to the two systems' assets


def test_reconcile_covers_each_chosen_entity_and_system(monkeypatch: pytest.MonkeyPatch) -> None:
    runs: list[tuple[str, str]] = []

    def run_reconcile(entity: str, system: str) -> _Ran:
        runs.append((entity, system))
        return _Ran(f"r{len(runs)}")

    monkeypatch.setattr("app.cli.recon.run_reconcile", run_reconcile)
    monkeypatch.setattr("app.cli.recon.findings_of_run", lambda _engine, run_id: [])
    monkeypatch.setattr("hub.store.db.create_store_engine", lambda: _NoEngine())
    result = runner.invoke(app, ["reconcile", "-e", "invoice", "-e", "customer", "-s", "sap"])
    assert result.exit_code == 0, result.output
    assert runs == [("customer", "sap"), ("invoice", "sap")]
    runs.clear()
    assert runner.invoke(app, ["reconcile", "--json"]).stdout.strip() == "[]"
    assert runs == [("all", "all")]  # one run, as before


class _NoEngine:
    def dispose(self) -> None:
        pass


def test_resync_with_keys_takes_one_entity(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("app.cli.launch.run_job", lambda *a, **k: pytest.fail("launched"))
    args = ["resync", "-e", "customer", "-e", "invoice", "--key", "CUS-0000001"]
    result = runner.invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 2
    assert "one --entity with --key" in result.output
