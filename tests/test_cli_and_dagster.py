"""The foundation's entry points: `hub` CLI commands and the Dagster code location."""

import subprocess
import sys
from pathlib import Path

import pytest
from dagster import DagsterInstance, Definitions
from typer.testing import CliRunner

from app.cli.main import app
from app.definitions import defs
from app.defs.resources import HubStoreResource
from hub.mapping.spec import MAPPINGS_DIR, check
from hub.store.migrate import head_revision

REPO = Path(__file__).resolve().parent.parent
runner = CliRunner()


def test_definitions_load() -> None:
    Definitions.validate_loadable(defs)
    assert defs.resolve_job_def("store_maintenance") is not None


def test_store_maintenance_job_on_both_databases(store_url: str) -> None:
    job = defs.resolve_job_def("store_maintenance")
    with DagsterInstance.ephemeral() as instance:
        result = job.execute_in_process(
            instance=instance, resources={"hub_store": HubStoreResource(database_url=store_url)}
        )
    assert result.success
    assert result.output_for_node("migrate_store") == head_revision()
    assert result.output_for_node("store_summary") == {
        "golden_records": 0,
        "outbox_pending": 0,
        "quarantine_open": 0,
        "findings_open": 0,
    }


def test_db_upgrade_command(store_url: str) -> None:
    result = runner.invoke(app, ["db", "upgrade", "--url", store_url])
    assert result.exit_code == 0, result.output
    assert f"revision {head_revision()}" in result.output


def test_db_upgrade_never_prints_the_password() -> None:
    url = "postgresql+psycopg2://hub:s3cr3t-pw@127.0.0.1:1/none?connect_timeout=1"
    result = runner.invoke(app, ["db", "upgrade", "--url", url])
    assert result.exit_code != 0
    assert "s3cr3t-pw" not in result.output
    assert "s3cr3t-pw" not in repr(result.exception)


def test_mappings_in_repo_are_valid() -> None:
    assert check(MAPPINGS_DIR) == []
    result = runner.invoke(app, ["mappings", "check"])
    assert result.exit_code == 0, result.output


def test_mapping_errors_name_file_line_and_field(tmp_path: Path) -> None:
    folder = tmp_path / "salesforce"
    folder.mkdir()
    bad = folder / "customer.yaml"
    bad.write_text(
        "system: salesforce\n"
        "entity: customer\n"
        "object: Account\n"
        "key: {system_id_field: Id}\n"
        "fields:\n"
        "  legal_name: {field: Name}\n"
        "  legal_nmae: {field: Name2}\n"
        "  currency: {field: CurrencyIsoCode, transform: [uppercase]}\n"
        "owns: [legal_name, tax_id]\n"
    )
    errors = [str(e) for e in check(tmp_path)]
    assert (
        f"{bad}:7: customer: fields.legal_nmae: not a field of canonical customer "
        "(did you mean 'legal_name'?)"
    ) in errors
    assert any(
        e.startswith(f"{bad}:8: customer: fields.currency.transform: unknown transform")
        for e in errors
    )
    assert any(e.startswith(f"{bad}:9: customer: owns.tax_id:") for e in errors)
    result = runner.invoke(app, ["mappings", "check", "--root", str(tmp_path)])
    assert result.exit_code == 1
    # the CLI checks native names too: Account has no Name2
    assert "fields.legal_nmae.field: 'Name2' is not a field of salesforce Account" in result.output
    assert "4 mapping error(s)" in result.output


def test_invalid_delivery_rules_are_reported_by_mappings_check(tmp_path: Path) -> None:
    (tmp_path / "deliveries.yaml").write_text("physical_families: []\nwarehouses: {DE: 1}\n")
    result = runner.invoke(app, ["mappings", "check", "--root", str(tmp_path)])
    assert result.exit_code == 1
    assert "deliveries.yaml: delivery rules are invalid" in result.output
    assert "physical_families" in result.output


def test_two_owners_of_one_field_is_an_error(tmp_path: Path) -> None:
    for system in ("salesforce", "sap"):
        (tmp_path / system).mkdir()
        (tmp_path / system / "customer.yaml").write_text(
            f"system: {system}\nentity: customer\nobject: X\nkey: {{system_id_field: Id}}\n"
            "fields:\n  legal_name: {field: Name}\nowns: [legal_name]\n"
        )
    errors = [str(e) for e in check(tmp_path)]
    assert (
        len(errors) == 1
        and "already owned by" in errors[0]
        and ":7: customer: owns.legal_name" in errors[0]
    )


@pytest.mark.slow
def test_dagster_definitions_validate_from_repo_root(tmp_path: Path) -> None:
    env = {"DAGSTER_HOME": str(tmp_path), "HUB_DATA_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    (tmp_path / "dagster.yaml").write_text((REPO / "dagster.yaml").read_text())
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "dagster"), "definitions", "validate"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "All code locations passed validation" in proc.stdout + proc.stderr
