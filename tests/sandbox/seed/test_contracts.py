"""Bundles and ramped contracts in the seeded book (``sandbox.seed.contracts``, issue 17):
a handful of customers hold them, every line of a ramped item bills the ramp step of its
period (``hub.pricing``), the current contract year bills the item's own price, and the
invoices still add up."""

from __future__ import annotations

from typing import Any

import pytest

from hub.model import Invoice, Subscription, validate_record
from hub.pricing import commitment_end, item_amount, ramped_item
from sandbox.seed import contracts
from sandbox.seed.book import Book
from sandbox.seed.catalog import AS_OF

SEED, CUSTOMERS = 42, 300


@pytest.fixture(scope="module")
def contracted() -> list[tuple[Subscription, list[Invoice]]]:
    out = []
    for part in Book(SEED, CUSTOMERS).slices():
        for sub in part.subscriptions:
            if not sub.get("ramp"):
                continue
            invoices = [i for i in part.invoices if i["subscription_id"] == sub["hub_id"]]
            out.append((_valid(sub), [_valid(i) for i in invoices]))
    return out


def _valid(record: dict[str, Any]) -> Any:
    return validate_record("invoice" if "lines" in record else "subscription", record)


def test_a_handful_of_customers_hold_a_bundle_and_a_ramped_3_year_contract(
    contracted: list[tuple[Subscription, list[Invoice]]],
) -> None:
    assert 3 <= len(contracted) <= 10
    for sub, _ in contracted:
        index = int(sub.customer_id.split("-")[1]) - 1
        assert index % contracts.CONTRACT_EVERY == contracts.CONTRACT_OFFSET
        assert [s.contract_year for s in sub.ramp] == [1, 2, 3]
        assert sub.commitment_term_months == 36 and commitment_end(sub) is not None
        [bundle] = [i for i in sub.items if i.bundle]
        assert sum(c.share_bps for c in bundle.bundle) == 10_000


def test_the_current_contract_year_bills_the_items_own_price(
    contracted: list[tuple[Subscription, list[Invoice]]],
) -> None:
    for sub, _ in contracted:
        item = next(i for i in sub.items if i.item_id == sub.ramp[0].item_id)
        assert item_amount(ramped_item(sub, item, AS_OF)) == item_amount(item)


def test_every_ramped_line_bills_the_step_of_its_period_and_invoices_add_up(
    contracted: list[tuple[Subscription, list[Invoice]]],
) -> None:
    off_today = 0  # lines of an earlier contract year: billed other than today's price
    for sub, invoices in contracted:
        item = next(i for i in sub.items if i.item_id == sub.ramp[0].item_id)
        for inv in invoices:
            assert inv.arithmetic_errors() == []
            for line in inv.lines:
                if line.sku != item.sku or line.kind.value != "recurring":
                    continue
                assert line.period_start is not None
                due = item_amount(ramped_item(sub, item, line.period_start))
                assert line.amount_minor == due, (inv.hub_id, line.line_no)
                off_today += due != item_amount(item)
    assert off_today > 0  # the ramp shows in the book: year-2 lines below year 3's price
