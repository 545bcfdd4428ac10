"""`hub mappings check` reports every error of every mapping file at once - a top-level
typo no longer hides the rest of its file - each with the file, the entity, the field,
what is wrong and the closest valid name, and checks native field names against what the
system declares (billing: its schema; Salesforce, PIM, WMS: the sandbox emulators)."""

from __future__ import annotations

import shutil
from pathlib import Path

from typer.testing import CliRunner

from app.cli.main import app
from hub.mapping.native import BILLING_NATIVE
from hub.mapping.spec import MAPPINGS_DIR, check, load_all

runner = CliRunner()


def _copy(tmp_path: Path) -> Path:
    root = tmp_path / "mappings"
    shutil.copytree(MAPPINGS_DIR, root)
    return root


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, (path, old)
    path.write_text(text.replace(old, new, 1))


def test_every_error_of_every_file_is_reported_with_the_closest_name(tmp_path: Path) -> None:
    root = _copy(tmp_path)
    sf = root / "salesforce" / "customer.yaml"
    _edit(sf, "\nowns:", "\nownz:")  # a top-level typo ...
    _edit(sf, "  legal_name: {field: Name", "  legal_nme: {field: Name")  # ... hides no more
    _edit(sf, "field: Segment__c", "field: Segmnet__c")  # native, Salesforce
    _edit(sf, "transform: [trim, upper]}", "transform: [trim, uper]}")
    billing = root / "billing" / "invoice.yaml"
    _edit(billing, "field: sap_billing_document", "field: sap_billing_doc")  # native, billing
    _edit(billing, "parent_field: invoice_id", "parent_field: invoice")
    _edit(billing, "object: invoice_lines", "object: invoice_line")
    wms = root / "wms" / "allocation.yaml"
    _edit(wms, "hub_id_field: external_ref", "hub_id_field: externalref")
    _edit(wms, "\nobject:", "\nobjet:")  # a top-level typo in a required key

    result = runner.invoke(app, ["mappings", "check", "--root", str(root)])
    assert result.exit_code == 1
    said = result.stderr
    expected = [
        f"{sf}:30: customer: ownz: unknown key 'ownz' (did you mean 'owns'?)",
        f"{sf}:12: customer: fields.legal_nme: not a field of canonical customer "
        "(did you mean 'legal_name'?)",
        f"{sf}:13: customer: fields.segment.field: 'Segmnet__c' is not a field of salesforce "
        "Account (did you mean 'Segment__c'?)",
        f"{sf}:19: customer: fields.billing_address.country.transform: unknown transform "
        "'uper' (did you mean 'upper'?)",
        f"{billing}:33: invoice: fields.external_ids.sap.field: 'sap_billing_doc' is not a "
        "field of billing invoices (did you mean 'sap_billing_document'?)",
        f"{billing}:37: invoice: children.lines.object: billing has no object 'invoice_line' "
        "(did you mean 'invoice_lines'?)",
        f"{wms}:7: allocation: objet: unknown key 'objet' (did you mean 'object'?)",
        f"{wms}:5: allocation: object: Field required",
    ]
    for line in expected:
        assert line in said.splitlines(), (line, said)
    # the WMS key is checked against the WMS once its object is known again
    _edit(wms, "\nobjet:", "\nobject:")
    errors = [str(e) for e in check(root, native=None)]
    assert not any("externalref" in e for e in errors)  # native names: only when asked
    result = runner.invoke(app, ["mappings", "check", "--root", str(root)])
    assert (
        f"{wms}:9: allocation: key.hub_id_field: 'externalref' is not a field of wms "
        "allocations (did you mean 'external_ref'?)"
    ) in result.stderr.splitlines()
    assert "parent_field" not in said  # not checked against an object that is not there
    assert "mapping error(s) in" in result.stderr


def test_the_repo_mappings_name_only_native_fields_the_systems_declare() -> None:
    assert load_all(MAPPINGS_DIR)[1] == []
    result = runner.invoke(app, ["mappings", "check"])
    assert result.exit_code == 0, result.output
    assert "native field names checked for billing, pim, salesforce, wms" in result.stdout
    assert "not for sap" in result.stdout
    # billing's declaration is the connector's native record: columns, the references it
    # hands over as hub ids and the child collections it nests
    assert {"parent_account_hub_id", "legal_name"} <= BILLING_NATIVE["accounts"]
    assert "invoice_lines" in BILLING_NATIVE["invoices"]
    assert "invoice_id" in BILLING_NATIVE["invoice_lines"]


def test_an_edited_mapping_is_seen_by_the_next_load_and_copies_are_independent(
    tmp_path: Path,
) -> None:
    """load_all keeps its last result per folder: an edit of a file (even one of the same
    size, within the file system's timestamp granularity) is still read, and what a caller
    does to its copy reaches no other caller."""
    root = _copy(tmp_path)
    first, _ = load_all(root)
    first[0].fields.clear()
    again, _ = load_all(root)
    assert again[0].fields, "a caller's change to its copy leaked into the next load"
    sf = root / "salesforce" / "customer.yaml"
    _edit(sf, "field: Segment__c", "field: Segment__x")  # same size, same moment
    specs, errors = load_all(root)
    assert not errors
    sf_customer = next(s for s in specs if s.system == "salesforce" and s.entity == "customer")
    assert any(f.field == "Segment__x" for f in sf_customer.fields.values())


def test_a_folder_without_mappings_is_an_error_not_zero_files_ok(tmp_path: Path) -> None:
    """A mistyped --root used to print "0 mapping file(s) OK" and pass."""
    (tmp_path / "empty").mkdir()
    for root, said in ((tmp_path / "nowhere", "is not a folder"), (tmp_path / "empty", "holds no")):
        result = runner.invoke(app, ["mappings", "check", "--root", str(root)])
        assert result.exit_code == 1, result.output
        assert said in result.output and "OK" not in result.output, result.output
