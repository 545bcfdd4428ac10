"""Bundles and contract terms in the billing store (issue 17): a subscription with a
bundle item, a commitment and a ramp maps to billing's columns and back losslessly, and
survives a write and a read through the billing connector; a store created before them
gets the columns, old rows reading as no bundle, no commitment and no ramp."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.base import Outcome
from connectors.billing import BillingConnector
from hub.model import validate_record
from tests.connectors.test_billing import (  # noqa: F401 - fixtures used by name
    billing,
    canonical_of,
    mapper,
    seeded,
    to_canonical,
)
from tests.old_billing_store import upgraded_old_store
from tests.unit import strategies

ACCOUNT = {
    "legal_name": "Contract Ltd",
    "billing_street": "1 Test Way",
    "billing_city": "Testville",
    "billing_postal_code": "12345",
    "billing_country": "GB",
}


@st.composite
def contracts(draw: st.DrawFn) -> dict[str, Any]:
    """A subscription whose first item is a bundle, with a commitment and a ramp of that
    item (by contract year or by date, price and/or quantity)."""
    sub = draw(strategies.subscriptions())
    first = sub["items"][0]
    first["bundle"] = [
        {"sku": "CORE", "quantity": draw(st.integers(1, 5)), "share_bps": 7_000},
        {"sku": "ADDON", "quantity": 1, "share_bps": 3_000},
    ]
    start = date.fromisoformat(sub["start_date"])
    unit = draw(st.integers(0, 10**6))
    by_year = draw(st.booleans())
    ramp = []
    for year in (2, 3):
        step: dict[str, Any] = {"item_id": first["item_id"]}
        if by_year:
            step["contract_year"] = year
        else:
            step["starts_on"] = (start + timedelta(days=365 * (year - 1))).isoformat()
        if draw(st.booleans()):
            step["price"] = {"kind": "per_unit", "unit_amount_minor": unit * year}
        else:
            step["quantity"] = draw(st.integers(0, 1_000))
        ramp.append(step)
    return {
        **sub,
        "commitment_minor": draw(st.integers(0, 10**12)),
        "commitment_term_months": 36,
        "ramp": ramp,
    }


@settings(max_examples=60, deadline=None)
@given(contracts())
def test_bundle_and_contract_terms_map_losslessly(record: dict[str, Any]) -> None:
    canonical = validate_record("subscription", record).model_dump(mode="json")
    native = mapper("subscription").to_native(canonical)
    assert native["commitment_minor"] == record["commitment_minor"]
    back = to_canonical("subscription", {**native, "updated_at": canonical["updated_at"]})
    assert back == canonical
    assert back["items"][0]["bundle"][0]["share_bps"] == 7_000


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(contracts())
def test_bundle_and_contract_terms_round_trip_through_the_store(
    billing: BillingConnector,  # noqa: F811 - the fixture
    record: dict[str, Any],
) -> None:
    canonical = validate_record("subscription", record).model_dump(mode="json")
    account = {**ACCOUNT, "hub_id": canonical["customer_id"], "currency": canonical["currency"]}
    (acct,) = billing.write_batch("customer", [account])
    assert acct.outcome is not Outcome.REJECTED, acct
    (result,) = billing.write_batch("subscription", [mapper("subscription").to_native(canonical)])
    assert result.outcome is not Outcome.REJECTED, result
    back = canonical_of(billing, "subscription", canonical["hub_id"])
    assert {k: v for k, v in back.items() if k != "updated_at"} == {
        k: v for k, v in canonical.items() if k != "updated_at"
    }
    assert back["ramp"] == canonical["ramp"] and back["ramp"]


def test_an_old_store_gets_bundle_and_contract_columns(tmp_path: Path) -> None:
    engine = upgraded_old_store(tmp_path / "old.sqlite", ("subscriptions", "subscription_items"))
    with engine.connect() as conn:
        assert conn.execute(
            sa.text("SELECT commitment_minor, commitment_term_months, ramp FROM subscriptions")
        ).one() == (None, None, "[]")
        assert conn.execute(sa.text("SELECT bundle FROM subscription_items")).one() == ("[]",)


def test_the_store_refuses_a_commitment_without_its_term(billing: BillingConnector) -> None:  # noqa: F811
    native = mapper("subscription").to_native(
        canonical_of(billing, "subscription", "SUB-0000001-1")
    )
    (result,) = billing.write_batch(
        "subscription", [{**native, "commitment_minor": 100, "commitment_term_months": None}]
    )
    assert result.outcome is Outcome.REJECTED
    assert "commitment" in str(result.error)
