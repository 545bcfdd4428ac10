"""Which findings a resync may push (hub.sync.triage), on the real mappings."""

from dataclasses import dataclass
from typing import Any

import pytest

from hub.mapping.spec import load_specs
from hub.sync.triage import owner_of, triage

SPECS = load_specs()


@dataclass
class F:
    id: str
    entity: str
    key: str
    system: str
    kind: str
    field: str | None
    expected: Any = None
    actual: Any = None


@pytest.mark.parametrize(
    ("entity", "field", "owner"),
    [
        ("invoice", "lines[3].amount_minor", "billing"),
        ("invoice", "total_minor", "billing"),
        ("product", "lifecycle", "pim"),
        ("customer", "billing_address.city", "salesforce"),
        ("customer", "credit_limit_minor", "sap"),
        ("customer", None, None),
    ],
)
def test_owner_of_a_finding_field(entity: str, field: str | None, owner: str | None) -> None:
    assert owner_of(SPECS, entity, field) == owner


def test_drift_on_the_owner_and_conflicts_need_a_person() -> None:
    found = [
        F("a", "invoice", "INV-1", "billing", "mismatch", "lines[0].amount_minor", 100, 200),
        F("b", "invoice", "INV-1", "sap", "mismatch", "total_minor", 100, 90),
        F("c", "product", "SKU-1", "pim", "mismatch", "lifecycle", "active", "retired"),
        F("d", "customer", "CUS-1", "sap", "conflict", "legal_name", "Acme", "ACME"),
        F("e", "customer", "CUS-2", "sap", "missing", None),
    ]
    fixable, held = triage(found, SPECS)
    assert [f.id for f in fixable] == ["b", "e"]
    reasons = {h.finding_id: h.reason for h in held}
    assert set(reasons) == {"a", "c", "d"}
    assert "billing owns invoice INV-1 lines[0].amount_minor" in reasons["a"]
    assert "never writes an owner's field" in reasons["c"]
    assert reasons["d"].startswith("conflict: sap changed customer CUS-1 legal_name")
    assert "salesforce" in reasons["d"]  # names the owner to fix it in
