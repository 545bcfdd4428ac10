"""The seeded book's subscription lifecycle (issue 17): resumed pauses with no invoice in
between, expiring discounts, dunning runs with recoveries and write-offs, usage records
behind every usage line, voided invoices reissued; and the two planted lifecycle drifts."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from typing import Any

import pytest

from hub.model import Invoice, Subscription
from sandbox.seed.book import DUNNING_DAYS, REISSUE_OFFSET, Book
from sandbox.seed.drift import WITHHOLD_INVOICE, plan


@pytest.fixture(scope="module")
def book() -> list[Any]:
    return list(Book(42, 300).slices())


def _subs_and_invoices(book: list[Any]) -> tuple[list[Subscription], list[Invoice]]:
    subs = [Subscription.model_validate(x) for s in book for x in s.subscriptions]
    invs = [Invoice.model_validate(x) for s in book for x in s.invoices]
    return subs, invs


def test_every_event_happens_in_the_default_book(book: list[Any]) -> None:
    subs, invs = _subs_and_invoices(book)
    resumed = [s for s in subs if s.resume_at is not None]
    assert len(resumed) >= 5
    by_sub: dict[str, list[Invoice]] = {}
    for inv in invs:
        by_sub.setdefault(inv.subscription_id or "", []).append(inv)
    for sub in resumed:
        assert sub.paused_at is not None and sub.resume_at is not None
        issued = [i.issue_date for i in by_sub[sub.hub_id]]
        # only the usage metered before the pause is billed in it (in arrears)
        paused = [i for i in by_sub[sub.hub_id] if sub.paused_at <= i.issue_date < sub.resume_at]
        for inv in paused:
            assert all(ln.kind.value == "usage" for ln in inv.lines), inv.hub_id
            assert all(ln.period_end and ln.period_end < sub.paused_at for ln in inv.lines)
        assert any(d >= sub.resume_at for d in issued), sub.hub_id  # billed again after
    assert all(s.paused_at is not None for s in subs if s.status.value == "paused")
    expiring = [s for s in subs if any(i.discount_until for i in s.items)]
    assert expiring
    outcomes = Counter(str(i.dunning_events[-1].outcome) for i in invs if i.dunning_events)
    assert outcomes["paid"] >= 5 and outcomes["written_off"] >= 1 and outcomes["None"] >= 5
    assert any(s.usage_records for s in subs)


def test_dunning_runs_follow_the_schedule(book: list[Any]) -> None:
    _subs, invs = _subs_and_invoices(book)
    for inv in (i for i in invs if i.dunning_events):
        assert inv.dunning_stage == inv.dunning_events[-1].stage
        for event in inv.dunning_events:
            assert event.on == inv.due_date + timedelta(days=DUNNING_DAYS[event.stage - 1])
        last = inv.dunning_events[-1].outcome
        status = {"paid": "paid", "written_off": "uncollectible"}.get(str(last), "open")
        assert inv.status.value == status, inv.hub_id


def test_every_voided_invoice_is_reissued_for_the_same_lines(book: list[Any]) -> None:
    _subs, invs = _subs_and_invoices(book)
    by_id = {i.hub_id: i for i in invs}
    voided = [i for i in invs if i.status.value == "void"]
    assert voided
    for void in voided:
        head, n = void.hub_id.rsplit("-", 1)
        again = by_id[f"{head}-{int(n) + REISSUE_OFFSET:03d}"]
        assert again.status.value in ("paid", "open")
        assert again.lines == void.lines and again.total_minor == void.total_minor
        assert again.issue_date == void.issue_date + timedelta(days=3)


def test_lifecycle_drift_is_planted_with_its_findings() -> None:
    drifts = {d.action: d for d in plan(Book(42, 300))}
    paused = next(d for d in plan(Book(42, 300)) if d.field == "paused_at")
    # the month billed in advance, and its usage billed in arrears on the pause's first day
    assert [f.field for f in paused.findings] == ["paused:issue_date"] * 2
    usage = drifts["usage_record_minus"]
    assert usage.findings[0].field.startswith("usage:lines[")  # type: ignore[union-attr]


def test_an_unbilled_period_is_planted_mid_history(book: list[Any]) -> None:
    """The withheld invoice is a paid one of an active subscription, neither its first nor
    one of its last two; the finding is keyed by its service period's start and expects
    its recurring lines (the subscription's items at their quantities, net of tax)."""
    drift = next(d for d in plan(Book(42, 300)) if d.action == WITHHOLD_INVOICE)
    inv = next(i for s in book for i in s.invoices if i["hub_id"] == drift.value["invoice"])
    sub = next(x for s in book for x in s.subscriptions if x["hub_id"] == inv["subscription_id"])
    siblings = [
        i["hub_id"] for s in book for i in s.invoices if i["subscription_id"] == sub["hub_id"]
    ]
    assert sub["status"] == "active" and inv["status"] == "paid"
    assert 0 < siblings.index(inv["hub_id"]) < len(siblings) - 2
    assert drift.key == f"{sub['hub_id']}@{inv['issue_date'].isoformat()}"
    assert [(f.entity, f.key, f.system, f.kind, f.field) for f in drift.findings] == [
        ("invoice", drift.key, "billing", "aggregate", "unbilled:period")
    ]
    items = Subscription.model_validate(sub).items
    priced = sum(i.price.amount_minor(i.quantity) for i in items if i.price.kind != "usage")
    assert drift.value["amount_at_stake_minor"] == priced > 0
    assert drift.value["currency"] == sub["currency"]
