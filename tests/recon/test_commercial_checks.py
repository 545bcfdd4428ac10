"""The commercial-model checks of issue 17 on small hand-built golden-record sets:
subscription vs customer currency, invoices issued after a subscription ended, dunning
consistency and unbilled periods."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.model import BillingPeriod, Price, PriceKind, add_months
from hub.recon import checks
from hub.recon.engine import connect
from hub.recon.registry import CheckContext


def _fields(t: pa.Table) -> dict[tuple[str, str], dict[str, Any]]:
    return {(r["key"], r["field"]): r for r in t.to_pylist()}


def _item(sub: str, item_id: str, price: Price, quantity: int, sku: str = "SKU") -> dict[str, Any]:
    return {
        "key": sub,
        "item_id": item_id,
        "sku": sku,
        "quantity": quantity,
        "kind": price.kind.value,
        "flat_amount_minor": price.flat_amount_minor,
        "unit_amount_minor": price.unit_amount_minor,
        "discount_bps": price.discount_bps,
    }


SEATS = Price(kind=PriceKind.PER_UNIT, unit_amount_minor=1_500, discount_bps=1_000)
PLATFORM = Price(kind=PriceKind.FLAT, flat_amount_minor=20_000)
API = Price(kind=PriceKind.USAGE, flat_amount_minor=500, unit_amount_minor=2)


def test_subscription_in_another_currency_than_its_customer() -> None:
    con = connect()
    subs = pa.table(
        {
            "key": ["s-ok", "s-usd", "s-orphan"],
            "external_id": ["1", "2", "3"],
            "customer_id": ["c-eur", "c-eur", "c-gone"],
            "currency": ["EUR", "USD", "USD"],
        }
    )
    customers = pa.table({"key": ["c-eur"], "currency": ["EUR"]})
    items = pa.Table.from_pylist(
        [
            _item("s-ok", "i1", PLATFORM, 1),
            _item("s-usd", "i1", SEATS, 10),
            _item("s-usd", "i2", PLATFORM, 1),
            _item("s-usd", "i3", API, 40),  # usage: its flat fee only
        ]
    )
    got = _fields(checks.subscription_currency(con, subs, customers, items, system="billing"))
    # an unknown customer is SubscriptionRefs' broken_ref, not a currency finding
    assert list(got) == [("s-usd", "customer_id.currency")]
    row = got[("s-usd", "customer_id.currency")]
    assert (row["kind"], row["expected"], row["actual"], row["external_id"]) == (
        "broken_ref",
        '"EUR"',
        '"USD"',
        "2",
    )
    period = SEATS.amount_minor(10) + PLATFORM.amount_minor(1) + API.amount_minor(0)
    assert (row["amount_at_stake_minor"], row["currency"]) == (period, "USD")
    # without prices the finding stands, with no amount
    bare = checks.subscription_currency(con, subs, customers, system="billing")
    assert bare.column("amount_at_stake_minor").to_pylist() == [None]


def test_invoices_issued_after_the_subscription_ended() -> None:
    con = connect()
    subs = pa.table(
        {
            "key": ["s-active", "s-canceled", "s-paused", "s-paused-open", "s-canceled-open"],
            "status": ["active", "canceled", "paused", "paused", "canceled"],
            "end_date": pa.array([None, "2025-03-01", "2025-04-15", None, None], pa.string()).cast(
                pa.date32()
            ),
        }
    )
    rows = [
        # (invoice, subscription, issue date, status, total)
        ("i-active", "s-active", "2025-06-01", "paid", 100),
        ("i-before", "s-canceled", "2025-02-01", "paid", 100),
        ("i-on-end", "s-canceled", "2025-03-01", "open", 100),  # final invoice: not judged
        ("i-after", "s-canceled", "2025-04-01", "open", 119),
        ("i-void", "s-canceled", "2025-05-01", "void", 100),  # voided: nothing billed
        ("i-paused", "s-paused", "2025-05-01", "draft", 57),
        ("i-no-end", "s-paused-open", "2025-06-01", "open", 100),  # no pause date held
        ("i-no-end2", "s-canceled-open", "2025-06-01", "open", 100),
        ("i-no-sub", None, "2025-06-01", "open", 100),
    ]
    inv = pa.table(
        {
            "key": [r[0] for r in rows],
            "subscription_id": [r[1] for r in rows],
            "issue_date": pa.array([r[2] for r in rows]).cast(pa.date32()),
            "status": [r[3] for r in rows],
            "total_minor": [r[4] for r in rows],
            "currency": ["EUR"] * len(rows),
        }
    )
    got = _fields(checks.invoices_after_end(con, inv, subs, system="billing"))
    assert set(got) == {("i-after", "ended:issue_date"), ("i-paused", "ended:issue_date")}
    after = got[("i-after", "ended:issue_date")]
    assert (after["expected"], after["actual"]) == ('"2025-03-01"', '"2025-04-01"')
    assert (after["amount_at_stake_minor"], after["currency"], after["kind"]) == (
        -119,
        "EUR",
        "aggregate",
    )
    assert got[("i-paused", "ended:issue_date")]["amount_at_stake_minor"] == -57


def _invoices(rows: list[tuple[Any, ...]]) -> pa.Table:
    """(key, customer, due date, status, stage, total, paid, currency)"""
    return pa.table(
        {
            "key": [r[0] for r in rows],
            "customer_id": [r[1] for r in rows],
            "due_date": pa.array([r[2] for r in rows], pa.date32()),
            "issue_date": pa.array([r[2] for r in rows], pa.date32()),
            "status": [r[3] for r in rows],
            "dunning_stage": pa.array([r[4] for r in rows], pa.int64()),
            "total_minor": pa.array([r[5] for r in rows], pa.int64()),
            "amount_paid_minor": pa.array([r[6] for r in rows], pa.int64()),
            "currency": [r[7] for r in rows],
        }
    )


TODAY = date(2025, 6, 30)


def test_dunning_stage_against_days_past_due() -> None:
    con = connect()
    inv = _invoices(
        [
            ("ok-1", "c", TODAY - timedelta(days=1), "open", 1, 100, 0, "EUR"),
            ("early-1", "c", TODAY, "open", 1, 100, 0, "EUR"),  # due today: not yet overdue
            ("early-3", "c", TODAY - timedelta(days=20), "open", 3, 100, 40, "EUR"),
            ("ok-4", "c", TODAY - timedelta(days=60), "open", 4, 100, 0, "EUR"),
            ("paid-early", "c", TODAY + timedelta(days=5), "paid", 2, 100, 100, "EUR"),
            ("unstaged", "c", TODAY - timedelta(days=31), "open", 0, 250, 50, "EUR"),
            ("fresh", "c", TODAY - timedelta(days=30), "open", 0, 100, 0, "EUR"),  # grace
            ("paid-late", "c", TODAY - timedelta(days=90), "paid", 0, 100, 100, "EUR"),
            ("lagging", "c", TODAY - timedelta(days=90), "open", 1, 100, 0, "EUR"),  # not judged
        ]
    )
    got = _fields(checks.dunning(con, inv, system="billing", today=TODAY, billed_through=TODAY))
    assert set(got) == {
        ("early-1", "dunning:dunning_stage"),
        ("early-3", "dunning:dunning_stage"),
        ("paid-early", "dunning:dunning_stage"),
        ("unstaged", "dunning:dunning_stage"),
    }
    assert (
        got[("early-3", "dunning:dunning_stage")]["expected"],
        got[("early-3", "dunning:dunning_stage")]["actual"],
    ) == ("2", "3")
    assert got[("early-3", "dunning:dunning_stage")]["amount_at_stake_minor"] == 60
    unstaged = got[("unstaged", "dunning:dunning_stage")]
    assert (unstaged["expected"], unstaged["actual"], unstaged["amount_at_stake_minor"]) == (
        "3",
        "0",
        200,
    )
    # the unstaged invoice is judged as of the day the system is known to have run: a
    # snapshot whose last invoice is older is not blamed for the days after it
    older = checks.dunning(
        con, inv, system="billing", today=TODAY, billed_through=TODAY - timedelta(days=10)
    )
    assert ("unstaged", "dunning:dunning_stage") not in _fields(older)


def test_dunning_level_and_blocking_of_customers() -> None:
    con = connect()
    inv = _invoices(
        [
            ("a1", "c-ok", TODAY - timedelta(days=20), "open", 2, 100, 0, "EUR"),
            ("a2", "c-ok", TODAY - timedelta(days=70), "paid", 4, 100, 100, "EUR"),
            ("b1", "c-low", TODAY - timedelta(days=40), "open", 3, 300, 100, "EUR"),
            ("b2", "c-low", TODAY - timedelta(days=40), "open", 3, 999, 0, "USD"),  # other cur.
            ("d1", "c-4", TODAY - timedelta(days=70), "open", 4, 500, 0, "EUR"),
            ("e1", "c-blocked", TODAY - timedelta(days=70), "open", 4, 80, 0, "EUR"),
        ]
    )
    customers = pa.table(
        {
            "key": ["c-ok", "c-low", "c-high", "c-4", "c-blocked"],
            "currency": ["EUR"] * 5,
            "dunning_level": [2, 1, 2, 4, 4],
            "status": ["active", "active", "active", "active", "blocked"],
        }
    )
    found = checks.dunning(con, inv, customers, system="billing", today=TODAY, billed_through=TODAY)
    got = _fields(found.filter(pc.equal(found.column("entity"), "customer")))
    assert set(got) == {
        ("c-low", "dunning:dunning_level"),
        ("c-high", "dunning:dunning_level"),
        ("c-4", "dunning:status"),
    }
    low = got[("c-low", "dunning:dunning_level")]
    assert (low["expected"], low["actual"], low["amount_at_stake_minor"], low["currency"]) == (
        "3",
        "1",
        200,
        "EUR",
    )
    high = got[("c-high", "dunning:dunning_level")]  # nothing open: level should be 0
    assert (high["expected"], high["actual"], high["amount_at_stake_minor"]) == ("0", "2", None)
    blocked = got[("c-4", "dunning:status")]
    assert (blocked["expected"], blocked["actual"], blocked["amount_at_stake_minor"]) == (
        '"blocked"',
        '"active"',
        500,
    )


@settings(max_examples=30, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(-40, 120), st.integers(0, 4), st.sampled_from(["open", "paid"])),
        min_size=1,
        max_size=20,
    ),
    st.integers(0, 20),
)
def test_dunning_stage_follows_the_schedule(cases: list[tuple[int, int, str]], lag: int) -> None:
    """Exactly the invoices the schedule condemns are flagged: a stage above what the days
    past due allow today, or an open invoice unstaged beyond the grace as of the day the
    system last billed."""
    schedule = checks.DunningSchedule()
    billed_through = TODAY - timedelta(days=lag)

    def allowed(days: int) -> int:
        return sum(days >= d for d in schedule.stage_days)

    rows, expected = [], set()
    for n, (overdue, stage, status) in enumerate(cases):
        due = TODAY - timedelta(days=overdue)
        rows.append((f"i{n}", "c", due, status, stage, 100, 0, "EUR"))
        late = (billed_through - due).days > schedule.unstaged_after_days
        if stage > allowed(overdue) or (status == "open" and stage == 0 and late):
            expected.add(f"i{n}")
    found = checks.dunning(
        connect(), _invoices(rows), system="billing", today=TODAY, billed_through=billed_through
    )
    assert set(found.column("key").to_pylist()) == expected


def _subs(rows: list[tuple[Any, ...]]) -> pa.Table:
    """(key, status, period, start, trial_end, end_date, currency)"""
    return pa.table(
        {
            "key": [r[0] for r in rows],
            "status": [r[1] for r in rows],
            "billing_period": [r[2] for r in rows],
            "start_date": pa.array([r[3] for r in rows], pa.date32()),
            "trial_end": pa.array([r[4] for r in rows], pa.date32()),
            "end_date": pa.array([r[5] for r in rows], pa.date32()),
            "currency": [r[6] for r in rows],
        }
    )


def _billed(rows: list[tuple[str, str, date, str, date | None]]) -> tuple[pa.Table, pa.Table]:
    """Invoices (key, subscription, issue date, status, line period start or None: no
    lines) and their lines (one per invoice, a month long)."""
    inv = pa.table(
        {
            "key": [r[0] for r in rows],
            "subscription_id": [r[1] for r in rows],
            "issue_date": pa.array([r[2] for r in rows], pa.date32()),
            "status": [r[3] for r in rows],
        }
    )
    with_lines = [r for r in rows if r[4] is not None]
    lines = pa.table(
        {
            "key": [r[0] for r in with_lines],
            "line_no": [1] * len(with_lines),
            "period_start": pa.array([r[4] for r in with_lines], pa.date32()),
            "period_end": pa.array(
                [add_months(r[4], 1) - timedelta(days=1) for r in with_lines if r[4]],
                pa.date32(),
            ),
        }
    )
    return inv, lines


def test_unbilled_periods() -> None:
    con = connect()
    subs = _subs(
        [
            ("s-month", "active", "month", date(2025, 1, 31), None, None, "EUR"),
            ("s-trial", "past_due", "quarter", date(2024, 12, 1), date(2025, 1, 1), None, "USD"),
            ("s-ended", "active", "month", date(2025, 1, 10), None, date(2025, 3, 10), "EUR"),
            ("s-paused", "paused", "month", date(2025, 1, 5), None, None, "EUR"),
            ("s-old", "active", "year", date(2020, 2, 1), None, None, "EUR"),
        ]
    )
    inv, lines = _billed(
        [
            ("m1", "s-month", date(2025, 1, 31), "paid", date(2025, 1, 31)),
            # Feb 28 (clipped from the 31st): voided, so February is not billed
            ("m2", "s-month", date(2025, 2, 28), "void", date(2025, 2, 28)),
            ("m3", "s-month", date(2025, 3, 31), "open", date(2025, 3, 31)),
            # April: not billed; May billed by an invoice without lines (its issue date)
            ("m5", "s-month", date(2025, 5, 31), "draft", None),
            ("t1", "s-trial", date(2025, 1, 1), "paid", date(2025, 1, 1)),
            ("t3", "s-trial", date(2025, 7, 1), "paid", date(2025, 7, 1)),
            ("e1", "s-ended", date(2025, 1, 10), "paid", date(2025, 1, 10)),
        ]
    )
    items = pa.Table.from_pylist(
        [
            _item("s-month", "i1", SEATS, 3),
            _item("s-month", "i2", API, 100),
            _item("s-trial", "i1", PLATFORM, 1),
        ]
    )
    found = checks.unbilled_periods(
        con, subs, inv, lines, items, system="billing", through=date(2025, 7, 15)
    )
    got = {r["key"]: r for r in found.to_pylist()}
    # s-month: Feb (voided), Apr and Jun 30 (started before July 15; July 31 has not);
    # s-trial: Apr (quarters from the trial end); s-ended: Feb (March 10 is its end date);
    # s-paused is not billed; s-old: periods before the billing history (Jan 2025) are
    # not judged, Feb 2025 is
    assert set(got) == {
        "s-month@2025-02-28",
        "s-month@2025-04-30",
        "s-month@2025-06-30",
        "s-trial@2025-04-01",
        "s-ended@2025-02-10",
        "s-old@2025-02-01",
    }
    feb = got["s-month@2025-02-28"]
    period = SEATS.amount_minor(3) + API.amount_minor(0)
    assert (feb["field"], feb["kind"], feb["entity"], feb["expected"], feb["actual"]) == (
        "unbilled:period",
        "aggregate",
        "invoice",
        str(period),
        "0",
    )
    assert (feb["amount_at_stake_minor"], feb["currency"]) == (period, "EUR")
    assert got["s-trial@2025-04-01"]["amount_at_stake_minor"] == PLATFORM.amount_minor(1)
    assert got["s-old@2025-02-01"]["amount_at_stake_minor"] is None  # no items given
    # nothing billed at all: no history to judge against
    empty = checks.unbilled_periods(
        con, subs, inv.slice(0, 0), lines.slice(0, 0), system="billing", through=date(2025, 7, 15)
    )
    assert empty.num_rows == 0


@settings(max_examples=40, deadline=None)
@given(
    st.sampled_from(["month", "quarter", "year"]),
    st.dates(date(2022, 1, 1), date(2025, 6, 1)),
    st.lists(st.sampled_from(["billed", "void", "none"]), min_size=1, max_size=30),
    st.integers(0, 40),
)
def test_unbilled_periods_are_the_periods_nobody_billed(
    period: str, anchor: date, fate: list[str], lag: int
) -> None:
    """Periods generated as ``hub.model.add_months`` steps them from the anchor; exactly
    those whose only invoices are void (or that have none) are reported."""
    months = BillingPeriod(period).months
    starts = [add_months(anchor, k * months) for k in range(len(fate))]
    through = starts[-1] + timedelta(days=lag)
    rows: list[tuple[str, str, date, str, date | None]] = [
        ("history", "other", date(2021, 1, 1), "paid", date(2021, 1, 1))
    ]
    expected = set()
    for k, (start, what) in enumerate(zip(starts, fate, strict=True)):
        if what != "none":
            rows.append((f"inv{k}", "sub", start, "paid" if what == "billed" else "void", start))
        if what != "billed" and start < through:
            expected.add(f"sub@{start.isoformat()}")
    inv, lines = _billed(rows)
    # line periods as long as the billing period
    ends = [
        add_months(r[4], months) - timedelta(days=1) if r[1] == "sub" else r[4]
        for r in rows
        if r[4] is not None
    ]
    lines = lines.set_column(3, "period_end", pa.array(ends, pa.date32()))
    subs = _subs([("sub", "active", period, anchor, None, None, "EUR")])
    # the period after the last generated one is unbilled too when it started by `through`
    following = add_months(anchor, len(fate) * months)
    if following < through:
        expected.add(f"sub@{following.isoformat()}")
    found = checks.unbilled_periods(connect(), subs, inv, lines, system="billing", through=through)
    assert set(found.column("key").to_pylist()) == expected


def test_billed_through_is_the_latest_issue_date_never_after_today() -> None:
    con = connect()
    inv = pa.table(
        {
            "key": ["a", "b", "c"],
            "issue_date": pa.array([date(2025, 6, 1), date(2025, 6, 28), date(2025, 6, 29)]),
            "status": ["paid", "open", "void"],  # a void invoice is no sign of billing
        }
    )
    con.register("stage_billing_invoice", inv)
    ctx = CheckContext(con, {}, [], {}, ["invoice"])
    assert ctx.billed_through("stage_billing_invoice") == date(2025, 6, 28)
    # the result is drained: the connection takes more work
    assert ctx.billed_through("stage_billing_invoice") == date(2025, 6, 28)
    assert ctx.today() == datetime.now(UTC).date()
    pinned = CheckContext(con, {}, [], {}, ["invoice"], as_of=date(2025, 1, 1))
    assert pinned.billed_through("stage_billing_invoice") == pinned.today() == date(2025, 1, 1)
    future = pa.table(
        {"key": ["x"], "issue_date": pa.array([date(2999, 1, 1)]), "status": ["open"]}
    )
    con.register("stage_future", future)
    assert ctx.billed_through("stage_future") == ctx.today()


def test_a_usage_line_billed_in_arrears_does_not_bill_its_period() -> None:
    """Usage is billed in arrears: the March invoice's usage line for February says
    nothing of February's own invoice, which is missing; an invoice with nothing but
    usage (a usage-only subscription's, a final one) or nothing at all bills its issue
    date's period."""
    subs = _subs(
        [
            ("s-seats", "active", "month", date(2025, 1, 1), None, None, "EUR"),
            ("s-usage", "active", "month", date(2025, 1, 1), None, None, "EUR"),
        ]
    )
    issued = {"a1": ("s-seats", 1), "a3": ("s-seats", 3), "a4": ("s-seats", 4),
              "u1": ("s-usage", 1), "u2": ("s-usage", 2), "u3": ("s-usage", 3),
              "u4": ("s-usage", 4)}  # fmt: skip
    inv = pa.table(
        {
            "key": list(issued),
            "subscription_id": [sub for sub, _ in issued.values()],
            "issue_date": pa.array([date(2025, m, 1) for _, m in issued.values()], pa.date32()),
            "status": ["paid"] * len(issued),
        }
    )
    rows = [  # (invoice, line kind, month of the line's period); u1 has no line
        ("a1", "recurring", 1), ("a3", "recurring", 3), ("a3", "usage", 2),
        ("a4", "recurring", 4), ("a4", "usage", 3),
        ("u2", "usage", 1), ("u3", "usage", 2), ("u4", "usage", 3),
    ]  # fmt: skip
    lines = pa.table(
        {
            "key": [r[0] for r in rows],
            "line_no": list(range(1, len(rows) + 1)),
            "kind": [r[1] for r in rows],
            "period_start": pa.array([date(2025, r[2], 1) for r in rows], pa.date32()),
            "period_end": pa.array(
                [add_months(date(2025, r[2], 1), 1) - timedelta(days=1) for r in rows],
                pa.date32(),
            ),
        }
    )
    items = pa.Table.from_pylist([_item("s-seats", "i1", SEATS, 3)])
    found = checks.unbilled_periods(
        connect(), subs, inv, lines, items, system="billing", through=date(2025, 4, 15)
    )
    rows_found = found.to_pylist()
    assert [(r["key"], r["amount_at_stake_minor"]) for r in rows_found] == [
        ("s-seats@2025-02-01", SEATS.amount_minor(3))
    ]
    # the renewal check reads the same spans: a renewal on Feb 10 is not billed by the
    # usage line of February
    renewing = subs.append_column("auto_renew", pa.array([True, False])).append_column(
        "renewal_date", pa.array([date(2025, 2, 10), None], pa.date32())
    )
    renewals = checks.renewals_not_invoiced(
        connect(), renewing, inv, lines, items, system="billing", through=date(2025, 4, 15)
    )
    assert renewals.column("key").to_pylist() == ["s-seats@2025-02-10"]
