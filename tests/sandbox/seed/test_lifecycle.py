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
from sandbox.seed.drift import plan


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
        assert not any(sub.paused_at <= d < sub.resume_at for d in issued), sub.hub_id
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
    assert [f.field for f in paused.findings] == ["paused:issue_date"]
    usage = drifts["usage_record_minus"]
    assert usage.findings[0].field.startswith("usage:lines[")  # type: ignore[union-attr]
