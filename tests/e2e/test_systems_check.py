"""`hub systems check` against a running landscape: every configured system reached and
its declared fields read; a mapped field the system lacks is named with the mapping file,
its line, the field and the fix, and the command exits 1; unconfigured systems are
skipped, not failed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from app.cli.main import app
from connectors import registry
from hub.mapping.spec import MAPPINGS_DIR
from hub.systems_check import check_systems
from sandbox.runner import running_sandbox

runner = CliRunner()


def test_systems_check_names_a_missing_field_and_its_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "mappings"
    shutil.copytree(MAPPINGS_DIR, root)
    pim = root / "pim" / "product.yaml"
    pim.write_text(pim.read_text().replace("field: values.unit,", "field: values.unit_code,"))
    with running_sandbox(tmp_path / "sb", seed=3, customers=2) as sb:
        reports = {r.system: r for r in check_systems(sb.env)}
        assert set(reports) == set(registry.NAMES)
        assert all(r.ok and r.reachable for r in reports.values()), reports
        assert reports["billing"].objects > 0 and reports["pim"].objects == 1
        # Salesforce's describe and SAP's $metadata were read: every mapped object checked
        assert reports["salesforce"].objects >= 4 and reports["sap"].objects >= 4
        assert "no field list" in reports["wms"].detail
        broken = {r.system: r for r in check_systems(sb.env, ["pim", "wms"], root)}
        assert set(broken) == {"pim", "wms"} and broken["wms"].ok
        (problem,) = broken["pim"].problems
        assert "pim/product.yaml:15:" in problem and "'values.unit_code'" in problem
        assert "did you mean 'values.unit'" in problem and "add the field" in problem

        # an S/4 whose extension names the hub id field otherwise than configured
        (sap,) = check_systems({**sb.env, "SAP_HUB_ID_FIELD": "YY1_HubId_bus"}, ["sap"])
        assert not sap.ok and len(sap.problems) == 4, sap.problems  # one per SAP mapping
        assert all(
            "'YY1_HubId' is not a field of sap" in p
            and "set SAP_HUB_ID_FIELD" in p
            and "'YY1_HubId_bus'" in p
            for p in sap.problems
        ), sap.problems

        monkeypatch.setenv("HUB_SANDBOX_DIR", str(sb.data_dir))
        for name in registry.NAMES:
            monkeypatch.delenv(registry.BY_NAME[name].marker, raising=False)
        done = runner.invoke(app, ["systems", "check", "--root", str(root), "--json"])
        assert done.exit_code == 1, done.output
        answer = {r["system"]: r for r in json.loads(done.stdout)}
        assert answer["pim"]["ok"] is False and answer["billing"]["ok"] is True
        assert "systems check failed for pim" in done.stderr
        plain = runner.invoke(app, ["systems", "check", "-s", "billing", "-s", "pim"])
        assert plain.exit_code == 0, plain.output
        assert plain.stdout.splitlines()[0].split()[:2] == ["billing", "OK"]
    gone = check_systems({}, ["pim"])
    assert gone[0].skipped and gone[0].ok and "PIM_URL" in gone[0].detail
