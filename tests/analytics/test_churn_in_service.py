"""Logo churn needs every subscription of the customer out of service: a usage-only
subscription in a month without usage moves usage MRR (its own line), and a customer whose
recurring MRR ends while a usage subscription stays in service contracts; neither is a
churn and a reactivation (issue 17)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, delete
from sqlalchemy.orm import Session

from hub.analytics import metrics_from_store
from hub.analytics.compute import sample_dates
from hub.store.db import create_store_engine
from hub.store.migrate import upgrade
from hub.store.models import GoldenRecord
from tests.analytics.conftest import customer, invoice, price, subscription
from tests.analytics.golden import write_golden
from tests.analytics.scenarios import _month_end, span

AS_OF = date(2025, 6, 30)
MONTHS = 6  # Jan-Jun 2025, opening 2024-12-31
USAGE = price("usage", unit_amount_minor=10)


def _usage_invoices(sub: dict[str, Any], amounts: dict[tuple[int, int], int | None]) -> list[Any]:
    """One usage invoice per month (service period = the month); None: no invoice."""
    out = []
    for (y, m), amount in amounts.items():
        if amount is None:
            continue
        start = date(y, m, 1).isoformat()
        out.append(
            invoice(
                f"INV-{sub['hub_id']}-{y}{m:02d}",
                sub,
                _month_end(y, m),
                [("API", amount, start, _month_end(y, m))],
            )
        )
    return out


def _write(engine: Engine, book: dict[str, list[dict[str, Any]]]) -> None:
    with Session(engine) as session, session.begin():
        session.execute(delete(GoldenRecord))
    for entity in ("customer", "subscription", "invoice"):
        write_golden(engine, entity, book.get(entity, []))


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    path: Path = tmp_path_factory.mktemp("churn") / "hub.sqlite"
    upgrade(f"sqlite:///{path}")
    eng = create_store_engine(f"sqlite:///{path}")
    yield eng
    eng.dispose()


@pytest.mark.parametrize("invoiced", [True, False], ids=["zero-line", "no-invoice"])
def test_zero_usage_month_is_a_usage_movement_not_churn(engine: Engine, invoiced: bool) -> None:
    """Usage billed in arrears counts from its last closed period: December 20.00 counts
    in January; January without usage (a zero line) makes February's MRR zero; February's
    30.00 counts in March. Without any January invoice, January's sample falls in a gap
    between invoiced periods (MRR zero) and February counts December's usage again. Either
    way the customer stays: usage down, then up, no churn, no reactivation."""
    sub = subscription("SUB-U", "CUS-U", "USD", "2024-10-01", [("API", 0, USAGE)])
    usage: dict[tuple[int, int], int | None] = {ym: 2000 for ym in span((2024, 10), (2025, 6))}
    usage[(2025, 1)] = 0 if invoiced else None
    usage[(2025, 2)] = 3000
    _write(
        engine,
        {
            "customer": [customer("CUS-U", "USD")],
            "subscription": [sub],
            "invoice": _usage_invoices(sub, usage),
        },
    )
    m = metrics_from_store(engine, AS_OF, months=MONTHS, reporting="USD")
    rows = {r["month"].isoformat()[:7]: r for r in m.movements.to_pylist()}
    # usage MRR is its own line: its changes are the usage movement, never churn
    moves = ("opening", "usage", "contraction", "churned", "reactivation", "closing")
    got = [tuple(rows[f"2025-0{n}"][k] for k in moves) for n in (1, 2, 3)]
    if invoiced:
        assert got == [
            (2000, 0, 0, 0, 0, 2000),
            (2000, -2000, 0, 0, 0, 0),
            (0, 3000, 0, 0, 0, 3000),
        ]
    else:
        assert got == [
            (2000, -2000, 0, 0, 0, 0),
            (0, 2000, 0, 0, 0, 2000),
            (2000, 1000, 0, 0, 0, 3000),
        ]
    for r in rows.values():
        assert r["customers_churned"] == 0 and r["customers_reactivated"] == 0
        assert r["customers_opening"] == 1 and r["customers_active"] == 1
    assert all(r["logo_churn_rate"] == 0.0 for r in rows.values())
    assert m.identity_errors() == []


def test_recurring_ending_while_usage_stays_in_service_is_contraction(engine: Engine) -> None:
    flat = price("flat", flat_amount_minor=1000)
    rec = subscription("SUB-R", "CUS-U", "USD", "2024-10-01", [("PLAT", 1, flat)],
                       status="canceled", end="2025-03-01", updated="2025-03-01")  # fmt: skip
    use = subscription("SUB-U", "CUS-U", "USD", "2024-10-01", [("API", 0, USAGE)])
    invs = _usage_invoices(use, dict.fromkeys(span((2024, 10), (2025, 6)), 0))
    for y, mo in span((2024, 10), (2025, 2)):
        ps = date(y, mo, 1).isoformat()
        invs.append(invoice(f"INV-R-{y}{mo:02d}", rec, ps, [("PLAT", 1000, ps, _month_end(y, mo))]))
    _write(engine, {"customer": [customer("CUS-U", "USD")], "subscription": [rec, use],
                    "invoice": invs})  # fmt: skip
    m = metrics_from_store(engine, AS_OF, months=MONTHS, reporting="USD")
    rows = {r["month"].isoformat()[:7]: r for r in m.movements.to_pylist()}
    mar = rows["2025-03"]
    assert (mar["opening"], mar["contraction"], mar["churned"], mar["closing"]) == (
        1000,
        -1000,
        0,
        0,
    )
    assert all(r["customers_churned"] == 0 for r in rows.values())
    assert rows["2025-06"]["customers_active"] == 1 and rows["2025-06"]["customers_closing"] == 0
    assert m.identity_errors() == []


def test_canceled_usage_subscription_still_churns(engine: Engine) -> None:
    """Out of service (ended) it is churn, even the month after a zero-usage month."""
    sub = subscription(
        "SUB-U",
        "CUS-U",
        "USD",
        "2024-10-01",
        [("API", 0, USAGE)],
        status="canceled",
        end="2025-03-15",
        updated="2025-03-15",
    )
    usage: dict[tuple[int, int], int | None] = {ym: 2000 for ym in span((2024, 10), (2025, 2))}
    usage[(2025, 1)] = 0
    _write(
        engine,
        {
            "customer": [customer("CUS-U", "USD")],
            "subscription": [sub],
            "invoice": _usage_invoices(sub, usage),
        },
    )
    m = metrics_from_store(engine, AS_OF, months=MONTHS, reporting="USD")
    rows = {r["month"].isoformat()[:7]: r for r in m.movements.to_pylist()}
    assert rows["2025-02"]["usage"] == -2000 and rows["2025-02"]["customers_churned"] == 0
    # in service with zero MRR at the end of February, gone at the end of March: a lost logo
    # that takes no MRR with it (its usage MRR went in February's usage movement)
    assert rows["2025-03"]["customers_churned"] == 1 and rows["2025-03"]["churned"] == 0
    assert rows["2025-04"]["customers_opening"] == 0
    assert m.identity_errors() == []


_SAMPLES = [s for _, s, _ in sample_dates(AS_OF, MONTHS)]
_MONTHS = span((2024, 10), (2025, 6))


@st.composite
def _books(draw: st.DrawFn) -> tuple[dict[str, list[dict[str, Any]]], list[dict[str, Any]]]:
    """One customer with one to three subscriptions: usage-only ones with any monthly
    usage (zero, or no invoice at all), flat ones billed every month of their service;
    each active, canceled with an end date, paused at some date (by its last change, or
    by ``paused_at`` with a later last change), or active again after a dated pause
    (``paused_at`` .. ``resume_at``, nothing billed for the months in between)."""
    subs, invs = [], []
    for n in range(draw(st.integers(1, 3))):
        sid = f"SUB-{n}"
        start = draw(st.sampled_from(_MONTHS[:6]))
        status = draw(st.sampled_from(["active", "canceled", "paused", "resumed"]))
        # a resumed pause begins before the last month (it resumes by the last one,
        # mostly after at least one unbilled month)
        after = _MONTHS[_MONTHS.index(start) + 1 : -1 if status == "resumed" else None]
        stop = draw(st.sampled_from(after))
        stop_day = date(*stop, 1 + draw(st.integers(0, 27))).isoformat()
        end = stop_day if status == "canceled" else None
        updated = stop_day if status in ("canceled", "paused") else "2024-01-01"
        paused_at = resume_at = None
        if status == "paused" and draw(st.booleans()):
            paused_at = stop_day
            updated = "2025-06-25"  # edited after the pause began
        last = stop if status in ("canceled", "paused") else _MONTHS[-1]
        served = span(start, last)
        if status == "resumed":
            back = _MONTHS[min(_MONTHS.index(stop) + draw(st.integers(2, 3)), len(_MONTHS) - 1)]
            paused_at, resume_at = stop_day, date(*back, 1).isoformat()
            served = [ym for ym in served if not stop < ym < back]
        status = "active" if status == "resumed" else status
        if draw(st.booleans()):
            sub = subscription(
                sid,
                "CUS-P",
                "USD",
                date(*start, 1).isoformat(),
                [("API", 0, USAGE)],
                status=status,
                end=end,
                updated=updated,
                paused_at=paused_at,
                resume_at=resume_at,
            )
            usage = {ym: draw(st.sampled_from([None, 0, 0, 1500, 4000])) for ym in served}
            invs += _usage_invoices(sub, usage)
        else:
            flat = price("flat", flat_amount_minor=draw(st.sampled_from([1000, 2500])))
            sub = subscription(
                sid,
                "CUS-P",
                "USD",
                date(*start, 1).isoformat(),
                [("PLAT", 1, flat)],
                status=status,
                end=end,
                updated=updated,
                paused_at=paused_at,
                resume_at=resume_at,
            )
            for y, m in served:
                ps = date(y, m, 1).isoformat()
                invs.append(
                    invoice(
                        f"INV-{sid}-{y}{m:02d}",
                        sub,
                        ps,
                        [("PLAT", flat["flat_amount_minor"], ps, _month_end(y, m))],
                    )
                )
        subs.append(sub)
    return {"customer": [customer("CUS-P", "USD")], "subscription": subs, "invoice": invs}, subs


def _in_service(sub: dict[str, Any], day: date) -> bool:
    """The documented rule by status and dates (the generated flat subscriptions have no
    invoicing gaps but their pauses)."""
    if day < date.fromisoformat(sub["start_date"]):
        return False
    if sub["end_date"] and day >= date.fromisoformat(sub["end_date"]):
        return False
    return not _paused_by_dates(sub, day)


def _paused_by_dates(sub: dict[str, Any], day: date) -> bool:
    """The documented pause rule: ``paused_at`` <= day < ``resume_at``, whatever the
    status; a paused status without ``paused_at`` from the record's last change."""
    if sub["paused_at"] is None:
        return sub["status"] == "paused" and day >= sub["updated_at"].date()
    resume = sub["resume_at"]
    return date.fromisoformat(sub["paused_at"]) <= day and (
        resume is None or day < date.fromisoformat(resume)
    )


def _paused(sub: dict[str, Any], day: date) -> bool:
    return day >= date.fromisoformat(sub["start_date"]) and _paused_by_dates(sub, day)


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(book=_books())
def test_churn_never_counts_a_customer_with_a_subscription_in_service(
    engine: Engine, book: tuple[dict[str, list[dict[str, Any]]], list[dict[str, Any]]]
) -> None:
    records, subs = book
    _write(engine, records)
    m = metrics_from_store(engine, AS_OF, months=MONTHS, reporting="USD")
    assert m.identity_errors() == []
    for i, row in enumerate(m.movements.to_pylist(), 1):
        # neither a subscription in service nor a paused one is churn
        if any(_in_service(s, _SAMPLES[i]) or _paused(s, _SAMPLES[i]) for s in subs):
            assert row["customers_churned"] == 0 and row["churned"] == 0, (row, subs)
        # nor is coming back from a pause a reactivation
        if any(_in_service(s, _SAMPLES[i - 1]) or _paused(s, _SAMPLES[i - 1]) for s in subs):
            assert row["customers_reactivated"] == 0 and row["reactivation"] == 0, (row, subs)
