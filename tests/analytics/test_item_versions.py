"""Issue 17's analytics rules on small hand-built books, figures worked out by hand:

- outside the invoiced span each sample is priced with the item versions in effect on
  that day (an upgraded item's ended version never adds to its successor, a scheduled
  version not yet in effect never counts);
- revenue written off net of tax (a part payment covers tax and revenue pro rata);
- customers whose first revenue predates the invoice history form the ``pre-history``
  cohort and are not new in the window's first month;
- the outputs say the reporting amounts are at constant currency.

Window: as of 2025-06-30, 6 months (Jan-Jun 2025); the opening sample is 2024-12-31."""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy import Engine

from hub.analytics import metrics_from_store
from tests.analytics.conftest import customer, invoice, price, subscription
from tests.analytics.golden import write_golden
from tests.analytics.scenarios import monthly, span

AS_OF = date(2025, 6, 30)
MONTHS = 6
SEAT = price("per_unit", unit_amount_minor=1000)
MOVES = ("opening", "new", "expansion", "reactivation", "contraction", "churned", "usage",
         "paused", "closing")  # fmt: skip


def _versions(sub: dict[str, Any], versions: list[tuple[int, str | None, str | None]]) -> None:
    """Replace ``sub``'s items by versions of one SEAT item: (quantity, from, to)."""
    sub["items"] = [
        {"item_id": f"{sub['hub_id']}-1", "sku": "SEAT", "quantity": qty, "price": SEAT,
         "effective_from": lo, "effective_to": hi}
        for qty, lo, hi in versions
    ]  # fmt: skip


def _write(engine: Engine, book: dict[str, list[dict[str, Any]]]) -> None:
    for entity in ("customer", "subscription", "invoice"):
        write_golden(engine, entity, book.get(entity, []))


def _moves(m: Any) -> dict[str, dict[str, int]]:
    return {r["month"].isoformat()[:7]: {k: r[k] for k in MOVES} for r in m.movements.to_pylist()}


def test_upgrade_mid_history_prices_each_month_with_the_version_in_effect(
    store: tuple[str, Engine],
) -> None:
    """V: 10 seats x 10.00 until 14 Mar 2025, 15 seats from 15 Mar to 30 Jun, 20 seats
    scheduled from 1 Jul; no invoice at all, so every sample is priced: 100.00 at the
    opening and to February, 150.00 from March (not 100 + 150 = 250.00, nor the
    scheduled 200.00 in June). W: the same upgrade on 15 Mar, invoiced monthly until
    January (100.00 lines); after the last invoiced period the price of the version in
    effect: 100.00 in February, 150.00 from March. Each: expansion +5000 in March only."""
    v = subscription("SUB-V", "CUS-V", "USD", "2024-10-01", [])
    _versions(v, [(10, "2024-10-01", "2025-03-14"), (15, "2025-03-15", "2025-06-30"),
                  (20, "2025-07-01", None)])  # fmt: skip
    w = subscription("SUB-W", "CUS-W", "USD", "2024-10-01", [])
    _versions(w, [(10, None, "2025-03-14"), (15, "2025-03-15", None)])
    invs = monthly("INV-W", w, span((2024, 10), (2025, 1)), [("SEAT", 10_000)])
    _write(
        store[1],
        {
            "customer": [customer("CUS-V", "USD"), customer("CUS-W", "USD")],
            "subscription": [v, w],
            "invoice": invs,
        },
    )
    m = metrics_from_store(store[1], AS_OF, months=MONTHS, reporting="USD")
    assert m.identity_errors() == []
    zero = dict.fromkeys(MOVES, 0)
    flat = {**zero, "opening": 20_000, "closing": 20_000}
    up = {**zero, "opening": 20_000, "expansion": 10_000, "closing": 30_000}
    after = {**zero, "opening": 30_000, "closing": 30_000}
    assert _moves(m) == {
        "2025-01": flat,
        "2025-02": flat,
        "2025-03": up,
        "2025-04": after,
        "2025-05": after,
        "2025-06": after,
    }
    mrr = {r["customer_id"]: r["mrr_minor"] for r in m.customer_mrr.to_pylist()}
    assert mrr == {"CUS-V": 15_000, "CUS-W": 15_000}
    # the 12-month cohort (2024-06-30): neither had started, so nobody
    assert m.summary["cohort_12m"]["customers"] == 0


def test_revenue_written_off_net_of_tax(store: tuple[str, Engine]) -> None:
    """Three invoices written off in the window. USD: 100.00 + 20.00 tax, nothing paid
    (unpaid 120.00, net 100.00); 50.00 + 10.00 tax with 30.00 paid (unpaid 30.00, of
    which revenue 30.00 x 50 / 60 = 25.00). EUR: 92.00 without tax (92.00 / 0.92 =
    100.00 USD). Lost with tax 150.00 + 100.00 USD; written off net of tax 125.00 +
    100.00 USD."""
    u = subscription("SUB-U", "CUS-U", "USD", "2024-10-01", [("SEAT", 10, SEAT)])
    e = subscription("SUB-E", "CUS-E", "EUR", "2024-10-01", [("SEAT", 10, SEAT)])

    def written_off(iid: str, sub: dict[str, Any], net: int, tax: int, paid: int) -> Any:
        doc = invoice(iid, sub, "2025-02-01", [("SEAT", net, "2025-02-01", "2025-02-28")],
                      status="uncollectible", stage=4)  # fmt: skip
        doc.update(tax_minor=tax, total_minor=net + tax, amount_paid_minor=paid)
        return doc

    invs = [
        written_off("INV-U1", u, 10_000, 2_000, 0),
        written_off("INV-U2", u, 5_000, 1_000, 3_000),
        written_off("INV-E1", e, 9_200, 0, 0),
    ]
    _write(
        store[1],
        {
            "customer": [customer("CUS-U", "USD"), customer("CUS-E", "EUR")],
            "subscription": [u, e],
            "invoice": invs,
        },
    )
    m = metrics_from_store(store[1], AS_OF, months=MONTHS, reporting="USD")
    assert {r["currency"]: r for r in m.revenue_lost.to_pylist()} == {
        "USD": {"currency": "USD", "invoices": 2, "lost_minor": 15_000, "lost_rep": 15_000,
                "written_off_net_minor": 12_500, "written_off_net_rep": 12_500},
        "EUR": {"currency": "EUR", "invoices": 1, "lost_minor": 9_200, "lost_rep": 10_000,
                "written_off_net_minor": 9_200, "written_off_net_rep": 10_000},
    }  # fmt: skip
    assert m.summary["revenue_lost_rep"] == 25_000
    assert m.summary["revenue_written_off_net_rep"] == 22_500


def test_pre_history_cohort_is_labelled_and_not_new(store: tuple[str, Engine]) -> None:
    """The book's invoices start in January 2025 (the window's first month). P has been a
    customer since 2023 (first invoice January 2025): its first revenue predates the
    history, so it is the ``pre-history`` cohort (100.00 at the opening and every month)
    and not new. N started on 5 Jan 2025 (first paid invoice that day): cohort 2025-01,
    new +3000 in January. Q started in 2023 and left on 1 Nov 2024, before the window:
    pre-history too, but with no MRR in the window it is in no cohort."""
    p = subscription("SUB-P", "CUS-P", "USD", "2023-03-01", [("SEAT", 10, SEAT)])
    n = subscription("SUB-N", "CUS-N", "USD", "2025-01-05", [("SEAT", 3, SEAT)])
    q = subscription("SUB-Q", "CUS-Q", "USD", "2023-03-01", [("SEAT", 2, SEAT)],
                     status="canceled", end="2024-11-01", updated="2024-11-01")  # fmt: skip
    invs = monthly("INV-P", p, span((2025, 1), (2025, 6)), [("SEAT", 10_000)])
    invs += [
        invoice(f"INV-N-{k}", n, ps, [("SEAT", 3_000, ps, pe)])
        for k, (ps, pe) in enumerate([("2025-01-05", "2025-02-04"), ("2025-02-05", "2025-03-04"),
                                      ("2025-03-05", "2025-04-04"), ("2025-04-05", "2025-05-04"),
                                      ("2025-05-05", "2025-06-04"), ("2025-06-05", "2025-07-04")])
    ]  # fmt: skip
    _write(
        store[1],
        {
            "customer": [customer(c, "USD") for c in ("CUS-P", "CUS-N", "CUS-Q")],
            "subscription": [p, n, q],
            "invoice": invs,
        },
    )
    m = metrics_from_store(store[1], AS_OF, months=MONTHS, reporting="USD")
    assert m.identity_errors() == []
    jan = m.movements.to_pylist()[0]
    assert (jan["opening"], jan["new"], jan["customers_new"], jan["closing"]) == (
        10_000,
        3_000,
        1,
        13_000,
    )
    rows = m.cohorts.to_pylist()
    assert [r["label"] for r in rows] == ["pre-history"] * 7 + ["2025-01"] * 6
    pre = [(r["age"], r["customers"], r["active"], r["mrr_rep"], r["revenue_retention"])
           for r in rows if r["label"] == "pre-history"]  # fmt: skip
    assert pre == [(a, 1, 1, 10_000, 1.0) for a in range(7)]
    jan_cohort = [r for r in rows if r["label"] == "2025-01"]
    assert {r["cohort"].isoformat() for r in jan_cohort} == {"2025-01-01"}
    assert [(r["customers"], r["active"], r["mrr_rep"]) for r in jan_cohort] == [(1, 1, 3_000)] * 6


def test_constant_currency_is_stated(store: tuple[str, Engine]) -> None:
    """The summary (JSON, Dagster metadata) names the basis of every reporting amount."""
    s = subscription("SUB-C", "CUS-C", "EUR", "2024-10-01", [("SEAT", 46, SEAT)])
    _write(store[1], {"customer": [customer("CUS-C", "EUR")], "subscription": [s]})
    m = metrics_from_store(store[1], AS_OF, months=MONTHS, reporting="USD")
    basis = m.summary["currency_basis"]
    assert basis.startswith("constant currency: every month converted at one rate table")
    # 460.00 EUR / 0.92 = 500.00 USD in every month: no exchange-rate movement
    assert [r["closing"] for r in m.movements.to_pylist()] == [50_000] * MONTHS
    assert m.as_dict()["summary"]["currency_basis"] == basis
