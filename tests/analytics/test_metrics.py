"""Every movement kind and edge case on the hand-built book (tests/analytics/scenarios.py),
against figures computed by hand; currency conversion into USD and EUR; the identity
check catches a broken table."""

from __future__ import annotations

from fractions import Fraction

import pyarrow as pa
import pytest
from sqlalchemy import Engine

from hub.analytics import Metrics, metrics_from_store
from hub.analytics.compute import sample_dates
from tests.analytics.conftest import customer, subscription
from tests.analytics.golden import write_golden
from tests.analytics.scenarios import (
    AS_OF,
    EUR_REP,
    EXPECTED_CUSTOMER_MRR,
    EXPECTED_REPORTING,
    GBP_REP,
    MONTHS,
    hand_book,
    monthly,
    span,
)

MOVES = (
    "opening",
    "new",
    "expansion",
    "reactivation",
    "contraction",
    "churned",
    "usage",
    "paused",
    "closing",
)


def _load(engine: Engine) -> None:
    for entity, records in hand_book().items():
        write_golden(engine, entity, records)


@pytest.fixture
def metrics(store: tuple[str, Engine]) -> Metrics:
    _load(store[1])
    return metrics_from_store(store[1], AS_OF, months=MONTHS, reporting="USD")


def test_samples_are_month_ends_and_the_as_of_day() -> None:
    got = [(i, s.isoformat()) for i, s, _ in sample_dates(AS_OF, 3)]
    assert got == [(0, "2025-03-31"), (1, "2025-04-30"), (2, "2025-05-31"), (3, "2025-06-30")]
    mid = sample_dates(AS_OF.replace(day=17), 1)
    assert [s.isoformat() for _, s, _ in mid] == ["2025-05-31", "2025-06-17"]


def test_every_movement_kind_in_reporting_currency(metrics: Metrics) -> None:
    got = {r["month"].isoformat(): {k: r[k] for k in MOVES} for r in metrics.movements.to_pylist()}
    assert got == EXPECTED_REPORTING
    assert metrics.identity_errors() == []


def test_customer_mrr_at_the_as_of_date(metrics: Metrics) -> None:
    rows = metrics.customer_mrr.to_pylist()
    assert {(r["customer_id"], r["currency"]): r["mrr_minor"] for r in rows} == (
        EXPECTED_CUSTOMER_MRR
    )
    rep = {r["customer_id"]: r["mrr_rep"] for r in rows}
    assert rep["CUS-B"] == EUR_REP and rep["CUS-D"] == GBP_REP and rep["CUS-A"] == 15000
    # paused (H) and trialing (I) customers carry no MRR
    assert "CUS-H" not in rep and "CUS-I" not in rep


def test_movements_per_currency_are_native(metrics: Metrics) -> None:
    rows = {(r["currency"], r["month"].isoformat()): r for r in
            metrics.movements_by_currency.to_pylist()}  # fmt: skip
    eur_mar, eur_may = rows[("EUR", "2025-03-01")], rows[("EUR", "2025-05-01")]
    assert (eur_mar["opening"], eur_mar["churned"], eur_mar["closing"]) == (20000, -20000, 0)
    assert (eur_may["reactivation"], eur_may["closing"]) == (20000, 20000)
    assert rows[("GBP", "2025-04-01")]["new"] == 10000
    usd = [rows[("USD", f"2025-0{m}-01")]["closing"] for m in range(1, 7)]
    # J's 5000 in every closing but March's and April's (paused)
    assert usd == [39850, 43850, 43850, 48850, 49850, 52850]
    by_cur = {r["currency"]: r for r in metrics.mrr_by_currency.to_pylist()}
    assert by_cur["USD"]["mrr_minor"] == 52850 and by_cur["USD"]["arr_minor"] == 12 * 52850
    assert by_cur["EUR"]["mrr_rep"] == EUR_REP
    assert (by_cur["USD"]["usage_mrr_minor"], by_cur["EUR"]["usage_mrr_minor"]) == (3000, 0)
    usd_jun = rows[("USD", "2025-06-01")]
    assert (usd_jun["usage"], usd_jun["expansion"], usd_jun["closing_usage"]) == (3000, 0, 3000)


def test_headline_rates_arr_arpa_cltv(metrics: Metrics) -> None:
    s = metrics.summary
    assert (s["mrr_rep"], s["arr_rep"], s["paying_customers"]) == (87247, 1046964, 8)
    assert s["arpa_rep"] == 10906  # 87247 / 8 = 10905.875, half even
    # usage (F's May usage, counted in June) is its own line
    assert (s["recurring_mrr_rep"], s["usage_mrr_rep"]) == (84247, 3000)
    assert s["arpa_recurring_rep"] == 10531  # 84247 / 8 = 10530.875
    # June: 84247 recurring open, +3000 usage (not expansion), nothing lost: recurring NRR 1
    assert s["logo_churn_rate"] == 0.0 and s["gross_revenue_churn_rate"] == 0.0
    assert s["net_revenue_retention"] == 1.0
    assert s["gross_revenue_retention"] == 1.0
    # window: churn+contraction 5000 + 21739 + 2000 over the six openings; H's pause
    # (-4000 in May) and J's (-5000 in March) are not churn, and both stay customers
    # (logos) while paused; J's resumption (+5000 in May) is not retention, as a
    # reactivation is not
    opening_sum = 61589 + 61589 + 65589 + 43850 + 61508 + 84247
    lost = 5000 + EUR_REP + 2000
    assert s["window_gross_revenue_churn_rate"] == round(lost / opening_sum, 6)
    assert s["window_logo_churn_rate"] == round(2 / (7 + 7 + 7 + 6 + 8 + 9), 6)
    assert s["window_gross_revenue_retention"] == round(1 - (lost + 4000 + 5000) / opening_sum, 6)
    assert (s["paused_mrr_rep"], s["paused_customers"], s["month_paused_rep"]) == (4000, 1, 0)
    may = {r["month"].isoformat(): r for r in metrics.movements.to_pylist()}["2025-05-01"]
    assert (may["customers_churned"], may["churned"], may["paused"]) == (0, 0, -4000 + 5000)
    assert may["gross_revenue_churn_rate"] == 0.0
    # H's pause is not retained; J coming back from its pause retains nothing more
    assert may["gross_revenue_retention"] == round(1 - 4000 / 61508, 6)
    cltv = Fraction(10531) * Fraction("0.8") / Fraction(lost, opening_sum)
    assert s["cltv_rep"] == round(cltv)  # CLTV = recurring ARPA x margin / revenue churn
    # E's churn in February had an uncollectible invoice: involuntary
    assert s["churned_involuntary_rep"] == -5000


def test_cltv_is_undefined_without_revenue_churn(store: tuple[str, Engine]) -> None:
    book = hand_book()
    keep = {"CUS-A", "CUS-C"}  # only expansion and new business
    for entity, records in book.items():
        key = "hub_id" if entity == "customer" else "customer_id"
        write_golden(store[1], entity, [r for r in records if r[key] in keep])
    m = metrics_from_store(store[1], AS_OF, months=MONTHS, reporting="USD")
    assert m.summary["cltv_rep"] is None
    assert "no revenue churned" in m.summary["cltv_note"]
    assert m.summary["mrr_rep"] == 15000 + 9000


def test_cohorts_by_first_paid_month(metrics: Metrics) -> None:
    """C first paid in Feb (annual), D in April; the rest paid before the window, except
    F: its subscription started on 2024-01-01, before the book's first invoice
    (2024-06-01, E's), so its first paid invoice (May 2025) is not when it became a
    customer - it is the pre-history cohort, aged from the window's opening (2024-12-31):
    58.50 by its price from the opening to May, 88.50 in June with May's usage."""
    rows = {(r["label"], r["age"]): r for r in metrics.cohorts.to_pylist()}
    assert {k[0] for k in rows} == {"pre-history", "2025-02", "2025-04"}
    assert [rows[("2025-02", a)]["logo_retention"] for a in range(5)] == [1.0] * 5
    assert rows[("2025-04", 2)]["mrr_rep"] == GBP_REP
    assert rows[("2025-04", 0)]["cohort"].isoformat() == "2025-04-01"
    pre = [rows[("pre-history", a)] for a in range(MONTHS + 1)]
    assert {r["cohort"] for r in pre} == {None}
    assert [(r["customers"], r["active"]) for r in pre] == [(1, 1)] * (MONTHS + 1)
    assert [r["mrr_rep"] for r in pre] == [5850] * 6 + [8850]
    assert pre[MONTHS]["revenue_retention"] == round(8850 / 5850, 6)
    assert metrics.cohorts.column("label").to_pylist()[0] == "pre-history"


def test_dunning_recovery_and_revenue_lost(metrics: Metrics) -> None:
    """From the dunning events (scenarios.py): per stage entered, A (recovered at 1), B
    (open at 1), E (written off at 3) and G (recovered at 2, 14 days after entering 1);
    D, paid with a stage but no run, is not in dunning. The old status-based rule had D
    recovered at stage 1 and counted each invoice at its highest stage only."""
    cols = ("invoices", "recovered", "still_open", "written_off", "voided", "recovery_rate",
            "billed_rep", "recovered_rep", "days_to_recover_avg")  # fmt: skip
    stages = {r["stage"]: tuple(r[c] for c in cols) for r in metrics.dunning.to_pylist()}
    assert stages == {
        # B 20000 EUR -> 21739; A 10000, G 24000, E 5000 USD
        1: (4, 2, 1, 1, 0, 0.5, 21739 + 10000 + 24000 + 5000, 34000, 7.0),
        2: (2, 1, 0, 1, 0, 0.5, 24000 + 5000, 24000, 0.0),
        3: (1, 0, 0, 1, 0, 0.0, 5000, 0, None),
    }
    s = metrics.summary
    assert (s["dunning_invoices"], s["dunning_recovered"], s["dunning_written_off"],
            s["dunning_still_open"]) == (4, 2, 1, 1)  # fmt: skip
    assert (s["dunning_recovered_rep"], s["dunning_days_to_recover_avg"]) == (34000, 7.0)
    assert metrics.revenue_lost.to_pylist() == [
        {"currency": "USD", "invoices": 1, "lost_minor": 5000, "lost_rep": 5000,
         "written_off_net_minor": 5000, "written_off_net_rep": 5000}
    ]  # fmt: skip
    assert metrics.summary["revenue_written_off_net_rep"] == 5000  # no tax in this book
    assert metrics.summary["dunning_recovery_rate"] == 0.5


def test_reporting_in_eur_converts_each_customer_once(store: tuple[str, Engine]) -> None:
    _load(store[1])
    m = metrics_from_store(store[1], AS_OF, months=MONTHS, reporting="EUR")
    by_cur = {r["currency"]: r["mrr_rep"] for r in m.mrr_by_currency.to_pylist()}
    # USD x 0.92 (exact per customer), GBP 10000 x 0.92 / 0.79 = 11645.57 -> 11646
    assert by_cur == {"EUR": 20000, "USD": 48622, "GBP": 11646}
    assert m.summary["mrr_rep"] == 80268
    assert m.identity_errors() == []


def test_identity_check_catches_a_broken_table(metrics: Metrics) -> None:
    broken = metrics.movements.set_column(
        metrics.movements.schema.get_field_index("new"),
        "new",
        pa.array(
            [r["new"] + (1 if i == 2 else 0) for i, r in enumerate(metrics.movements.to_pylist())],
            pa.int64(),
        ),
    )
    metrics.movements = broken
    errors = metrics.identity_errors()
    assert any("2025-03-01" in e and "!= closing" in e for e in errors)


@pytest.mark.parametrize("months", [MONTHS, 12], ids=["extra-sample", "window-sample"])
def test_twelve_month_cohort_nrr_and_grr(store: tuple[str, Engine], months: int) -> None:
    """Customers with recurring MRR on 2024-06-30: E (5000, its first subscription) and F
    (58.50 by its current price, no invoices yet). Now E pays 7000 on its second
    subscription and F 5850 recurring (its usage excluded): NRR 12850 / 10850, GRR 1.
    The same whether 2024-06-30 is a sample of the window (12 months) or an extra one."""
    _load(store[1])
    m = metrics_from_store(store[1], AS_OF, months=months, reporting="USD")
    s = m.summary
    assert s["cohort_12m"] == {
        "date": "2024-06-30",
        "customers": 2,
        "recurring_mrr_then_rep": 10850,
        "recurring_mrr_now_rep": 12850,
        "retained_rep": 10850,
    }
    assert (s["nrr_12m"], s["grr_12m"]) == (round(12850 / 10850, 6), 1.0)
    assert s["rates_period"]["net_revenue_retention"] == "monthly"
    assert s["rates_period"]["nrr_12m"] == "12 months"
    assert s["currency_basis"].startswith("constant currency")
    assert m.identity_errors() == []
    if months == MONTHS:  # the extra sample leaves the window's figures alone
        got = {r["month"].isoformat(): {k: r[k] for k in MOVES} for r in m.movements.to_pylist()}
        assert got == EXPECTED_REPORTING


def test_twelve_month_grr_caps_each_customer_and_counts_pause_as_lost(
    store: tuple[str, Engine],
) -> None:
    """Expansion never lifts GRR; a customer paused now retains nothing."""
    seat = {"kind": "per_unit", "unit_amount_minor": 1000}
    subs = [
        subscription("SUB-X", "CUS-X", "USD", "2024-01-01", [("SEAT", 20, seat)]),
        subscription(
            "SUB-Y",
            "CUS-Y",
            "USD",
            "2024-01-01",
            [("SEAT", 10, seat)],
            status="paused",
            updated="2025-03-05",
        ),
    ]
    for entity, records in (("customer", [customer("CUS-X", "USD"), customer("CUS-Y", "USD")]),
                            ("subscription", subs)):  # fmt: skip
        write_golden(store[1], entity, records)
    m = metrics_from_store(store[1], AS_OF, months=3, reporting="USD")
    s = m.summary
    # then X 20000 + Y 10000; now X 20000, Y paused (10000 paused MRR, not revenue)
    assert s["cohort_12m"]["recurring_mrr_then_rep"] == 30000
    assert (s["nrr_12m"], s["grr_12m"]) == (round(20000 / 30000, 6), round(20000 / 30000, 6))
    assert (s["paused_mrr_rep"], s["paused_customers"]) == (10000, 1)


def test_pause_runs_from_paused_at_not_the_last_edit(store: tuple[str, Engine]) -> None:
    """K, paused today, went on pause on 20 April (its April invoice, billed in advance,
    covers the month) and was last edited on 20 June: its 30.00 is paused MRR from the
    April month end on, not from June. L has a pause scheduled after the as-of date: it
    is paying until then. The old rule (paused since the last edit) had K paying 30.00 in
    April and May (its price after the last invoice) and pausing in June."""
    flat = {"kind": "flat", "flat_amount_minor": 3000}
    k = subscription("SUB-K", "CUS-K", "USD", "2024-12-01", [("PLAT", 1, flat)],
                     status="paused", updated="2025-06-20", paused_at="2025-04-20")  # fmt: skip
    lsub = subscription("SUB-L", "CUS-L", "USD", "2024-12-01", [("PLAT", 1, flat)],
                        paused_at="2025-07-10")  # fmt: skip
    invs = monthly("INV-K", k, span((2024, 12), (2025, 4)), [("PLAT", 3000)])
    invs += monthly("INV-L", lsub, span((2024, 12), (2025, 6)), [("PLAT", 3000)])
    write_golden(store[1], "customer", [customer("CUS-K", "USD"), customer("CUS-L", "USD")])
    write_golden(store[1], "subscription", [k, lsub])
    write_golden(store[1], "invoice", invs)
    m = metrics_from_store(store[1], AS_OF, months=MONTHS, reporting="USD")
    rows = {r["month"].isoformat()[:7]: r for r in m.movements.to_pylist()}
    assert {mo: r["paused"] for mo, r in rows.items()} == {
        "2025-01": 0, "2025-02": 0, "2025-03": 0, "2025-04": -3000, "2025-05": 0, "2025-06": 0
    }  # fmt: skip
    assert [r["closing"] for r in rows.values()] == [6000, 6000, 6000, 3000, 3000, 3000]
    assert [r["closing_paused"] for r in rows.values()] == [0, 0, 0, 3000, 3000, 3000]
    assert all(r["churned"] == 0 and r["customers_churned"] == 0 for r in rows.values())
    assert [r["customers_active"] for r in rows.values()] == [2] * MONTHS
    assert (m.summary["paused_mrr_rep"], m.summary["paused_customers"]) == (3000, 1)
    assert m.identity_errors() == []
