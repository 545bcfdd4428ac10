"""The seeded book (seed 42, 300 customers) as golden records: the movement identity holds
in every currency, totals are sane, and the SQL MRR of plain subscriptions equals what
``Price.amount_minor`` says for them."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import pytest
from sqlalchemy import Engine

from hub.analytics import Metrics, metrics_from_store
from hub.analytics.rates import half_even_div
from hub.model import Price
from sandbox.seed.book import Book
from sandbox.seed.catalog import AS_OF, FX
from tests.analytics.golden import write_golden

SEED, CUSTOMERS = 42, 300


def _book() -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {"customer": [], "subscription": [], "invoice": []}
    for part in Book(seed=SEED, customers=CUSTOMERS).slices():
        out["customer"].append(part.customer)
        out["subscription"] += part.subscriptions
        out["invoice"] += part.invoices
    return out


@pytest.fixture(scope="module")
def book() -> dict[str, list[dict[str, Any]]]:
    return _book()


@pytest.fixture
def metrics(store: tuple[str, Engine], book: dict[str, list[dict[str, Any]]]) -> Metrics:
    for entity, records in book.items():
        write_golden(store[1], entity, records)
    return metrics_from_store(store[1], AS_OF, months=12, reporting="USD")


def test_identity_and_sane_totals(metrics: Metrics, book: dict[str, list[Any]]) -> None:
    assert metrics.identity_errors() == []
    s = metrics.summary
    assert metrics.counts == {"subscriptions": len(book["subscription"]),
                              "invoices": len(book["invoice"]), "customers": CUSTOMERS}  # fmt: skip
    assert 0 < s["paying_customers"] <= CUSTOMERS
    assert s["mrr_rep"] > 0 and s["arr_rep"] == 12 * s["mrr_rep"]
    assert s["mrr_rep"] == sum(r["mrr_rep"] for r in metrics.customer_mrr.to_pylist())
    assert {r["currency"] for r in metrics.mrr_by_currency.to_pylist()} == set(FX)
    assert all(r["mrr_minor"] > 0 for r in metrics.customer_mrr.to_pylist())
    for row in metrics.movements.to_pylist():
        assert row["new"] >= 0 and row["expansion"] >= 0 and row["reactivation"] >= 0
        assert row["contraction"] <= 0 and row["churned"] <= 0
        assert row["churned_involuntary"] >= row["churned"]
        assert 0.5 < row["net_revenue_retention"] < 1.5
        assert 0 <= row["logo_churn_rate"] < 0.2
    assert s["cltv_rep"] is not None and s["cltv_rep"] > s["arpa_rep"]
    # the book writes some canceled subscriptions' last invoice off
    assert s["revenue_lost_rep"] > 0
    cohorts = metrics.cohorts.to_pylist()
    assert sum(r["customers"] for r in cohorts if r["age"] == 0) <= CUSTOMERS
    assert all(0 <= r["logo_retention"] <= 1 for r in cohorts)


def test_plain_subscriptions_match_price_amount_minor(
    metrics: Metrics, book: dict[str, list[dict[str, Any]]]
) -> None:
    """Customers whose every subscription is active, monthly-or-longer, with no usage item:
    MRR = sum over items of Price.amount_minor(quantity) / billing months (half even)."""
    months = {"month": 1, "quarter": 3, "year": 12}
    expected: dict[str, int] = defaultdict(int)
    excluded = set()
    for sub in book["subscription"]:
        cid = sub["customer_id"]
        kinds = {item["price"]["kind"] for item in sub["items"]}
        if sub["status"] != "active" or "usage" in kinds or sub["trial_end"]:
            excluded.add(cid)
            continue
        for item in sub["items"]:
            if item.get("effective_to") is not None:
                continue  # an ended item version (issue 17's price history): not MRR now
            amount = Price.model_validate(item["price"]).amount_minor(item["quantity"])
            expected[cid] += half_even_div(amount, months[sub["billing_period"]])
    voided = {i["subscription_id"] for i in book["invoice"] if i["status"] == "void"}
    excluded |= {s["customer_id"] for s in book["subscription"] if s["hub_id"] in voided}
    got = {r["customer_id"]: r["mrr_minor"] for r in metrics.customer_mrr.to_pylist()}
    plain = {cid: v for cid, v in expected.items() if cid not in excluded}
    assert len(plain) > 50
    assert {cid: got.get(cid) for cid in plain} == plain
