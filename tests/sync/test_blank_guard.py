"""The blast-radius guard on fields (issue 15): one pass that would empty a field on more
records of one entity in one system than the guard allows (max(min_records, share)) holds
those pushes for a person; fewer go out as usual. Here the ERP, which owns tax ids,
blanks them, and the CRM that shows them is the target."""

import pytest

from hub.store import OutboxEntry
from hub.sync.deletions import GuardLimits
from tests.sync.conftest import account, count


@pytest.mark.parametrize(("blanked", "held"), [(2, 0), (3, 3)])
def test_blanking_beyond_guard_held(setup, blanked: int, held: int) -> None:
    make, crm, erp, engine = setup
    for n in range(5):
        crm.put(account(f"Customer {n} GmbH"))
    make().run(["customer"])
    for sid in list(erp.rows):
        erp.put({"Id": sid, "TaxNumber": f"DE{sid}"})
    make().run(["customer"])
    assert sum(1 for r in crm.rows.values() if r.get("Tax_Id__c")) == 5
    for sid in list(erp.rows)[:blanked]:
        erp.put({"Id": sid, "TaxNumber": None})

    sync = make()
    sync.guard = GuardLimits(min_records=2, share=0.10)
    sync.run(["customer"])

    still_set = sum(1 for r in crm.rows.values() if r.get("Tax_Id__c"))
    assert still_set == 5 - blanked + held  # held: not blanked in the CRM yet
    assert count(engine, OutboxEntry, OutboxEntry.status == "held") == held
    assert sync.held == ({("salesforce", "customer"): held} if held else {})
