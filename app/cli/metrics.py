"""``hub metrics``: the subscription metrics computed straight from the hub store.

It only reads (golden records in, numbers out), so it computes in this process rather than
launching a Dagster run; the daily ``analytics_daily`` job materialises the same numbers
as assets. ``--json`` prints one JSON object on stdout and nothing else (diagnostics go to
stderr); ``--plot DIR`` writes waterfall.png and cohorts.png.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import typer

from app.cli.options import use_store
from hub import settings
from hub.currency import exponent


def _money(minor: int | None, currency: str) -> str:
    if minor is None:
        return "undefined"
    return f"{Decimal(minor).scaleb(-exponent(currency)):,.{exponent(currency)}f} {currency}"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:.2f} %"


def metrics(
    ctx: typer.Context,
    as_of: str = typer.Option(
        "", "--as-of", help="as-of date YYYY-MM-DD (default: today, UTC)", show_default=False
    ),
    months: int = typer.Option(12, min=1, max=60, help="calendar months in the window"),
    currency: str = typer.Option(
        "", "--currency", help="reporting currency (default: HUB_REPORTING_CURRENCY or USD)"
    ),
    margin: float = typer.Option(0.8, min=0.0001, max=1.0, help="gross margin for CLTV"),
    rates: Path | None = typer.Option(None, help="rate table YAML (default: the shipped one)"),
    url: str = typer.Option(None, envvar="HUB_DATABASE_URL", help="SQLAlchemy URL of the store"),
    as_json: bool = typer.Option(False, "--json", help="numbers as one JSON object on stdout"),
    customers: bool = typer.Option(False, help="with --json: include per-customer MRR rows"),
    plot: Path | None = typer.Option(None, "--plot", help="write waterfall.png, cohorts.png"),
) -> None:
    """MRR, ARR, movements, churn, retention, cohorts, CLTV and dunning recovery."""
    from hub.analytics import RatesError, RateTable, metrics_from_store
    from hub.store.db import create_store_engine

    try:
        day = date.fromisoformat(as_of) if as_of else datetime.now(UTC).date()
    except ValueError:
        typer.echo(f"--as-of: not a date: {as_of!r}", err=True)
        raise typer.Exit(2) from None
    engine = create_store_engine(use_store(ctx, url or settings.database_url()))
    try:
        result = metrics_from_store(
            engine,
            day,
            months=months,
            reporting=currency.strip().upper() or None,
            rates=RateTable.load(rates),
            gross_margin=margin,
        )
    except RatesError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    finally:
        engine.dispose()
    if plot is not None:
        from hub.analytics.plots import cohort_heatmap_png, waterfall_png

        plot.mkdir(parents=True, exist_ok=True)
        (plot / "waterfall.png").write_bytes(waterfall_png(result))
        (plot / "cohorts.png").write_bytes(cohort_heatmap_png(result))
        typer.echo(f"plots written to {plot}", err=True)
    if as_json:
        typer.echo(json.dumps(result.as_dict(customers=customers), sort_keys=True))
    else:
        _print(result)
    errors = result.identity_errors()
    if errors:
        typer.echo("MRR movement identity broken:\n  " + "\n  ".join(errors[:20]), err=True)
        raise typer.Exit(1)


def _print(result: object) -> None:
    from hub.analytics import Metrics

    assert isinstance(result, Metrics)
    s, cur = result.summary, result.reporting_currency
    typer.echo(
        f"as of {result.as_of} ({result.months} months, {cur} at constant currency: one rate "
        f"table for every month, {result.rates_source})"
    )
    typer.echo(
        f"  MRR {_money(s['mrr_rep'], cur)} (recurring {_money(s['recurring_mrr_rep'], cur)}, "
        f"usage {_money(s['usage_mrr_rep'], cur)})   ARR {_money(s['arr_rep'], cur)}"
    )
    typer.echo(
        f"  paused (not MRR, not churn): {_money(s['paused_mrr_rep'], cur)} of "
        f"{s['paused_customers']} customers"
    )
    typer.echo(
        f"  paying customers {s['paying_customers']}   ARPA {_money(s['arpa_rep'], cur)}   "
        f"CLTV {_money(s['cltv_rep'], cur)} ({s['cltv_note']})"
    )
    c12 = s["cohort_12m"]
    typer.echo(
        f"  12-month NRR {_pct(s['nrr_12m'])}, GRR {_pct(s['grr_12m'])} (recurring MRR of the "
        f"{c12['customers']} customers paying on {c12['date']}, now vs then)"
    )
    typer.echo(
        f"  {s['month'][:7]} monthly: logo churn {_pct(s['logo_churn_rate'])}, revenue churn "
        f"{_pct(s['gross_revenue_churn_rate'])}, NRR {_pct(s['net_revenue_retention'])}, "
        f"GRR {_pct(s['gross_revenue_retention'])}"
    )
    typer.echo(
        f"  window monthly: logo churn {_pct(s['window_logo_churn_rate'])}/month, revenue churn "
        f"{_pct(s['window_gross_revenue_churn_rate'])}/month, dunning recovery "
        f"{_pct(s['dunning_recovery_rate'])}, lost to failed payments "
        f"{_money(s['revenue_lost_rep'], cur)} with tax, revenue written off net of tax "
        f"{_money(s['revenue_written_off_net_rep'], cur)}"
    )
    cols = ("opening", "new", "expansion", "reactivation", "contraction", "churned", "usage",
            "paused", "closing")  # fmt: skip
    typer.echo("  " + f"{'month':<9}" + "".join(f"{c:>15}" for c in cols))
    for row in result.movements.to_pylist():
        typer.echo("  " + f"{row['month']:%Y-%m}   " + "".join(f"{row[c]:>15,}" for c in cols))
