"""A migrated SQLite hub store per test and builders for hand-made canonical records."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from hub.store.db import create_store_engine
from hub.store.migrate import upgrade


@pytest.fixture
def store(tmp_path: Path) -> Iterator[tuple[str, Engine]]:
    url = f"sqlite:///{tmp_path / 'hub.sqlite'}"
    upgrade(url)
    engine = create_store_engine(url)
    yield url, engine
    engine.dispose()


def ts(day: date | str) -> datetime:
    d = date.fromisoformat(day) if isinstance(day, str) else day
    return datetime(d.year, d.month, d.day, 9, 0, tzinfo=UTC)


def customer(cid: str, currency: str) -> dict[str, Any]:
    return {
        "hub_id": cid,
        "legal_name": f"{cid} Ltd",
        "billing_address": {"street": "1 Main", "city": "X", "postal_code": "1", "country": "US"},
        "currency": currency,
        "segment": "smb",
        "updated_at": ts("2024-01-01"),
    }


def price(kind: str = "per_unit", **kw: Any) -> dict[str, Any]:
    return {"kind": kind, **kw}


def subscription(
    sid: str,
    cid: str,
    currency: str,
    start: str,
    items: list[tuple[str, int, dict[str, Any]]],
    *,
    period: str = "month",
    status: str = "active",
    end: str | None = None,
    trial_end: str | None = None,
    updated: str = "2025-01-01",
    paused_at: str | None = None,
    resume_at: str | None = None,
) -> dict[str, Any]:
    return {
        "hub_id": sid,
        "customer_id": cid,
        "currency": currency,
        "billing_period": period,
        "status": status,
        "start_date": start,
        "end_date": end,
        "trial_end": trial_end,
        "paused_at": paused_at,
        "resume_at": resume_at,
        "items": [
            {"item_id": f"{sid}-{n}", "sku": sku, "quantity": qty, "price": p}
            for n, (sku, qty, p) in enumerate(items, 1)
        ],
        "updated_at": ts(updated),
    }


def invoice(
    iid: str,
    sub: dict[str, Any],
    issue: str,
    lines: list[tuple[str, int, str, str]],
    *,
    status: str = "paid",
    stage: int = 0,
    events: Sequence[tuple[int, str, str | None]] = (),
) -> dict[str, Any]:
    """``lines``: (sku, amount_minor, period_start, period_end); ``events``: the dunning
    run, (stage, day reached, outcome)."""
    total = sum(line[1] for line in lines)
    return {
        "hub_id": iid,
        "number": iid,
        "customer_id": sub["customer_id"],
        "subscription_id": sub["hub_id"],
        "currency": sub["currency"],
        "lines": [
            {"line_no": n, "sku": sku, "amount_minor": amount, "period_start": ps, "period_end": pe}
            for n, (sku, amount, ps, pe) in enumerate(lines, 1)
        ],
        "subtotal_minor": total,
        "total_minor": total,
        "amount_paid_minor": total if status == "paid" else 0,
        "issue_date": issue,
        "due_date": issue,
        "status": status,
        "dunning_stage": stage,
        "dunning_events": [{"stage": st, "on": on, "outcome": out} for st, on, out in events],
        "updated_at": ts(issue),
    }
