"""Subscription analytics on Dagster: one daily-partitioned step computes every metric
from the golden records in one DuckDB session and materialises five assets:

    hub/subscription_golden, hub/invoice_golden, hub/customer_golden
        -> analytics/mrr -> analytics/mrr_movements  (check: movement_identity, ERROR)
                         -> analytics/retention, analytics/cohorts, analytics/dunning

A partition is an as-of date (UTC): MRR at the end of that day, the movements of the
months of the window ending with it (the last one month-to-date), churn, retention, CLTV,
cohorts and dunning over the same window. Recomputing a partition is idempotent; past
partitions are restated from what the golden record knows now (definitions in
docs/analytics.md). One multi-asset rather than five assets, so the golden records are
loaded and the MRR grid built once per run, not once per asset.

Metadata keeps headline numbers, capped Markdown tables and the two charts (inline PNG);
the full result is written to ``$HUB_DATA_DIR/analytics/<date>/`` (metrics.json,
customer_mrr.parquet, waterfall.png, cohorts.png) and its path is in the metadata.

No ``from __future__ import annotations``: Dagster inspects Config and op annotations.
Nothing runs at import or while definitions load.
"""

import json
from collections.abc import Iterator, Sequence
from datetime import date
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    AssetSelection,
    AssetSpec,
    Config,
    DailyPartitionsDefinition,
    Definitions,
    Failure,
    MaterializeResult,
    MetadataValue,
    build_schedule_from_partitioned_job,
    define_asset_job,
    multi_asset,
)
from pydantic import Field

from app.defs.resources import HubStoreResource
from hub.analytics import Metrics, RatesError, RateTable, metrics_from_store
from hub.settings import data_dir

GROUP = "analytics"
GOLDEN_DEPS = [
    AssetKey(["hub", "subscription_golden"]),
    AssetKey(["hub", "invoice_golden"]),
    AssetKey(["hub", "customer_golden"]),
]
MRR_KEY = AssetKey(["analytics", "mrr"])
MOVEMENTS_KEY = AssetKey(["analytics", "mrr_movements"])
RETENTION_KEY = AssetKey(["analytics", "retention"])
COHORTS_KEY = AssetKey(["analytics", "cohorts"])
DUNNING_KEY = AssetKey(["analytics", "dunning"])
ANALYTICS_KEYS = (MRR_KEY, MOVEMENTS_KEY, RETENTION_KEY, COHORTS_KEY, DUNNING_KEY)
IDENTITY_CHECK = "movement_identity"
#: Rows of the Markdown tables in metadata (large metadata breaks the UI's transport).
TOP_N = 20

PARTITIONS = DailyPartitionsDefinition(start_date="2024-01-01", timezone="UTC")


class AnalyticsConfig(Config):
    """Window, margin and currency of one recompute (concrete defaults for the Launchpad)."""

    months: int = Field(default=12, ge=1, le=60, description="calendar months in the window")
    gross_margin: float = Field(
        default=0.8, gt=0, le=1, description="gross margin used by CLTV (0.8 = 80 %)"
    )
    reporting_currency: str = Field(
        default="", description="ISO 4217 code; empty: HUB_REPORTING_CURRENCY or USD"
    )
    rates_file: str = Field(
        default="", description="rate table YAML; empty: HUB_ANALYTICS_RATES or the shipped one"
    )


def _md_table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    head = "| " + " | ".join(columns) + " |\n| " + " | ".join("---" for _ in columns) + " |\n"
    body = "".join(
        "| " + " | ".join("" if r.get(c) is None else str(r[c]) for c in columns) + " |\n"
        for r in rows[:TOP_N]
    )
    more = f"\n… {len(rows) - TOP_N} more rows in the output files" if len(rows) > TOP_N else ""
    return head + body + more


def _write_outputs(metrics: Metrics, waterfall: bytes, heatmap: bytes) -> Path:
    out = data_dir() / "analytics" / metrics.as_of.isoformat()
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(metrics.as_dict(), indent=1, sort_keys=True))
    pq.write_table(metrics.customer_mrr, out / "customer_mrr.parquet")
    (out / "waterfall.png").write_bytes(waterfall)
    (out / "cohorts.png").write_bytes(heatmap)
    return out


@multi_asset(
    name="subscription_analytics",
    specs=[
        AssetSpec(
            MRR_KEY,
            deps=GOLDEN_DEPS,
            description="MRR per customer, per currency and in the reporting currency at "
            "the end of the partition's day; ARR = 12 x MRR.",
        ),
        AssetSpec(
            MOVEMENTS_KEY,
            deps=[MRR_KEY],
            description="MRR movements per month of the window: new, expansion, "
            "reactivation, contraction, churned of recurring MRR, usage (the change in "
            "usage MRR) and paused (MRR going on pause, not churn); opening + movements = "
            "closing.",
        ),
        AssetSpec(
            RETENTION_KEY,
            deps=[MOVEMENTS_KEY],
            description="12-month cohort NRR and GRR (headline); monthly logo and revenue "
            "churn, net and gross revenue retention; ARPA, CLTV (recurring MRR, constant "
            "currency).",
        ),
        AssetSpec(
            COHORTS_KEY,
            deps=[MRR_KEY],
            description="Retention tables by first-paid month (logo and revenue).",
        ),
        AssetSpec(
            DUNNING_KEY,
            deps=GOLDEN_DEPS,
            description="Invoices recovered per dunning stage; revenue lost to failed "
            "payments (uncollectible).",
        ),
    ],
    check_specs=[
        AssetCheckSpec(
            IDENTITY_CHECK,
            asset=MOVEMENTS_KEY,
            description="opening + movements = closing for every month and currency, each "
            "opening = the previous closing, last closing = the MRR snapshot",
        )
    ],
    partitions_def=PARTITIONS,
    group_name=GROUP,
    op_tags={"hub/area": "analytics"},
)
def subscription_analytics(
    context: AssetExecutionContext, config: AnalyticsConfig, hub_store: HubStoreResource
) -> Iterator[MaterializeResult | AssetCheckResult]:
    as_of = date.fromisoformat(context.partition_key)
    try:
        rates = RateTable.load(config.rates_file or None)
        metrics = metrics_from_store(
            hub_store.engine(),
            as_of,
            months=config.months,
            reporting=config.reporting_currency.strip().upper() or None,
            rates=rates,
            gross_margin=config.gross_margin,
        )
    except RatesError as exc:  # no retry fixes a missing rate
        raise Failure(description=str(exc), allow_retries=False) from exc
    # matplotlib loads here, not with the code location: every process that loads the
    # definitions (the UI's code server, each run, the CLI) would pay ~0.5 s CPU for it
    from hub.analytics.plots import cohort_heatmap_png, markdown_image, waterfall_png

    waterfall, heatmap = waterfall_png(metrics), cohort_heatmap_png(metrics)
    out = _write_outputs(metrics, waterfall, heatmap)
    s, cur = metrics.summary, metrics.reporting_currency
    context.log.info(
        f"as of {as_of}: MRR {s['mrr_rep']} {cur} minor units, {s['paying_customers']} "
        f"paying customers; outputs in {out}"
    )
    common = {
        "as_of": MetadataValue.text(as_of.isoformat()),
        "output_dir": MetadataValue.path(str(out)),
    }
    yield MaterializeResult(
        asset_key=MRR_KEY,
        metadata={
            **common,
            "reporting_currency": MetadataValue.text(cur),
            "currency_basis": MetadataValue.text(s["currency_basis"]),
            "mrr_minor": MetadataValue.int(s["mrr_rep"]),
            "recurring_mrr_minor": MetadataValue.int(s["recurring_mrr_rep"]),
            "usage_mrr_minor": MetadataValue.int(s["usage_mrr_rep"]),
            "paused_mrr_minor": MetadataValue.int(s["paused_mrr_rep"]),
            "paused_customers": MetadataValue.int(s["paused_customers"]),
            "arr_minor": MetadataValue.int(s["arr_rep"]),
            "paying_customers": MetadataValue.int(s["paying_customers"]),
            "arpa_minor": MetadataValue.int(s["arpa_rep"] or 0),
            "by_currency": MetadataValue.md(
                _md_table(
                    metrics.mrr_by_currency.to_pylist(),
                    ("currency", "customers", "mrr_minor", "arr_minor", "mrr_rep"),
                )
            ),
            "top_customers": MetadataValue.md(
                _md_table(
                    metrics.customer_mrr.to_pylist(),
                    ("customer_id", "legal_name", "currency", "mrr_minor", "mrr_rep"),
                )
            ),
            "golden_counts": MetadataValue.json(metrics.counts),
            "customer_mrr": MetadataValue.path(str(out / "customer_mrr.parquet")),
        },
    )
    movement_rows = metrics.movements.to_pylist()
    yield MaterializeResult(
        asset_key=MOVEMENTS_KEY,
        metadata={
            **common,
            "month": MetadataValue.json(s["month_movements"]),
            "churned_involuntary_minor": MetadataValue.int(s["churned_involuntary_rep"]),
            "months": MetadataValue.md(
                _md_table(
                    movement_rows,
                    (
                        "month",
                        "opening",
                        "new",
                        "expansion",
                        "reactivation",
                        "contraction",
                        "churned",
                        "usage",
                        "paused",
                        "closing",
                    ),
                )
            ),
            "waterfall": MetadataValue.md(markdown_image(waterfall, "MRR waterfall")),
            "waterfall_png": MetadataValue.path(str(out / "waterfall.png")),
        },
    )
    errors = metrics.identity_errors()
    yield AssetCheckResult(
        asset_key=MOVEMENTS_KEY,
        check_name=IDENTITY_CHECK,
        passed=not errors,
        severity=AssetCheckSeverity.ERROR,
        metadata={
            "months_checked": MetadataValue.int(len(movement_rows)),
            "currencies_checked": MetadataValue.int(metrics.mrr_by_currency.num_rows),
            "errors": MetadataValue.int(len(errors)),
            "first_errors": MetadataValue.md("\n".join(f"- {e}" for e in errors[:TOP_N]) or "none"),
        },
    )
    yield MaterializeResult(
        asset_key=RETENTION_KEY,
        metadata={
            **common,
            **{
                k: MetadataValue.float(float(s[k]))
                for k in ("nrr_12m", "grr_12m")
                if s[k] is not None
            },
            "cohort_12m": MetadataValue.json(s["cohort_12m"]),
            # the month's and the window's rates are monthly: labelled so in their keys
            **{
                (
                    "monthly_" + k if not k.startswith("window_") else "window_monthly_" + k[7:]
                ): MetadataValue.float(float(s[k]))
                for k in (
                    "logo_churn_rate",
                    "gross_revenue_churn_rate",
                    "net_revenue_retention",
                    "gross_revenue_retention",
                    "window_logo_churn_rate",
                    "window_gross_revenue_churn_rate",
                    "window_net_revenue_retention",
                    "window_gross_revenue_retention",
                )
                if s[k] is not None
            },
            "currency_basis": MetadataValue.text(s["currency_basis"]),
            "gross_margin": MetadataValue.float(s["gross_margin"]),
            "cltv_minor": MetadataValue.int(s["cltv_rep"])
            if s["cltv_rep"] is not None
            else MetadataValue.text("undefined"),
            "cltv_note": MetadataValue.text(s["cltv_note"]),
        },
    )
    cohort_rows = metrics.cohorts.to_pylist()
    yield MaterializeResult(
        asset_key=COHORTS_KEY,
        metadata={
            **common,
            "cohorts": MetadataValue.int(len({r["cohort"] for r in cohort_rows})),
            "heatmap": MetadataValue.md(markdown_image(heatmap, "cohort retention")),
            "heatmap_png": MetadataValue.path(str(out / "cohorts.png")),
        },
    )
    yield MaterializeResult(
        asset_key=DUNNING_KEY,
        metadata={
            **common,
            "recovery_rate": MetadataValue.float(float(s["dunning_recovery_rate"] or 0.0)),
            "invoices_in_dunning": MetadataValue.int(s["dunning_invoices"]),
            "recovered_minor": MetadataValue.int(s["dunning_recovered_rep"]),
            "revenue_lost_minor": MetadataValue.int(s["revenue_lost_rep"]),
            "revenue_written_off_net_of_tax_minor": MetadataValue.int(
                s["revenue_written_off_net_rep"]
            ),
            "stages": MetadataValue.md(
                _md_table(
                    metrics.dunning.to_pylist(),
                    (
                        "stage",
                        "invoices",
                        "recovered",
                        "still_open",
                        "written_off",
                        "recovery_rate",
                        "billed_rep",
                        "recovered_rep",
                        "days_to_recover_avg",
                    ),
                )
            ),
            "lost_by_currency": MetadataValue.md(
                _md_table(
                    metrics.revenue_lost.to_pylist(),
                    (
                        "currency",
                        "invoices",
                        "lost_minor",
                        "lost_rep",
                        "written_off_net_minor",
                        "written_off_net_rep",
                    ),
                )
            ),
        },
    )


ANALYTICS_JOB = "analytics_daily"
analytics_job = define_asset_job(
    ANALYTICS_JOB,
    selection=AssetSelection.assets(*ANALYTICS_KEYS),
    partitions_def=PARTITIONS,
    description="Recompute the subscription metrics for one as-of day (a partition).",
)

#: Daily at 04:00 UTC for the day before (after the nightly syncs); stopped until enabled.
analytics_schedule = build_schedule_from_partitioned_job(
    analytics_job, hour_of_day=4, minute_of_hour=0
)


def analytics_definitions(*, with_resources: bool = True) -> Definitions:
    """The analytics' assets (with their check), job and schedule, for ``app.definitions``
    to merge. ``Definitions.merge`` refuses two different objects under one resource key,
    so merge with ``with_resources=False`` into definitions that already bind
    ``hub_store`` (``app.definitions`` does)."""
    return Definitions(
        assets=[subscription_analytics],
        jobs=[analytics_job],
        schedules=[analytics_schedule],
        resources={"hub_store": HubStoreResource()} if with_resources else {},
    )
