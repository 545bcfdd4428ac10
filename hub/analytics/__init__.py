"""Subscription analytics from the golden record: MRR and its movements, ARR, churn,
retention, cohorts, CLTV and dunning recovery, computed in DuckDB (definitions in
docs/analytics.md)."""

from __future__ import annotations

from datetime import date

import duckdb
from sqlalchemy import Engine

from hub.analytics.compute import DEFAULT_MARGIN, DEFAULT_MONTHS, Metrics, compute_metrics
from hub.analytics.frames import Frames, load_frames, register_frames
from hub.analytics.rates import RatesError, RateTable, reporting_currency
from hub.recon.engine import connect

__all__ = [
    "DEFAULT_MARGIN",
    "DEFAULT_MONTHS",
    "Frames",
    "Metrics",
    "RateTable",
    "RatesError",
    "compute_metrics",
    "load_frames",
    "metrics_from_store",
    "register_frames",
    "reporting_currency",
]


def metrics_from_store(
    engine: Engine,
    as_of: date,
    *,
    months: int = DEFAULT_MONTHS,
    reporting: str | None = None,
    rates: RateTable | None = None,
    gross_margin: float = DEFAULT_MARGIN,
    con: duckdb.DuckDBPyConnection | None = None,
) -> Metrics:
    """Load the golden records from the hub store and compute every metric."""
    frames = load_frames(engine)
    own = con is None
    con = con or connect()
    try:
        register_frames(con, frames)
        return compute_metrics(
            con, as_of, months=months, reporting=reporting, rates=rates, gross_margin=gross_margin
        )
    finally:
        if own:
            con.close()
