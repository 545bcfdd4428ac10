"""The two charts finance asks for, as PNG bytes: the MRR bridge (waterfall) over the
window and the cohort retention heat map.

Figures are drawn on ``matplotlib.figure.Figure`` with the Agg canvas directly, never
through ``pyplot``: no global backend or figure registry, so Dagster steps in threads and
a headless server are safe.
"""

from __future__ import annotations

import base64
import io
from decimal import Decimal

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from hub.analytics.compute import MOVEMENTS, Metrics
from hub.currency import exponent

_COLOURS = {
    "new": "#2e7d32",
    "expansion": "#66bb6a",
    "reactivation": "#26a69a",
    "contraction": "#ef6c00",
    "churned": "#c62828",
    "usage": "#5c6bc0",
    "paused": "#8d6e63",
}


def _major(minor: int, currency: str) -> float:
    """For drawing only: the numbers themselves stay integer minor units."""
    return float(Decimal(minor).scaleb(-exponent(currency)))


def _png(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return buf.getvalue()


def waterfall_png(metrics: Metrics) -> bytes:
    """Opening MRR of the window, each movement kind summed over it, closing MRR."""
    rows = metrics.movements.to_pylist()
    cur = metrics.reporting_currency
    opening = rows[0]["opening"] if rows else 0
    closing = rows[-1]["closing"] if rows else 0
    steps = [(m, sum(r[m] for r in rows)) for m in MOVEMENTS]
    fig = Figure(figsize=(8, 4.2))
    ax = fig.add_subplot()
    labels, level = ["opening"], opening
    ax.bar(0, _major(opening, cur), color="#546e7a")
    for x, (name, amount) in enumerate(steps, start=1):
        bottom = level if amount >= 0 else level + amount
        ax.bar(x, _major(abs(amount), cur), bottom=_major(bottom, cur), color=_COLOURS[name])
        ax.annotate(
            f"{_major(amount, cur):+,.0f}",
            (x, _major(max(level, level + amount), cur)),
            ha="center",
            va="bottom",
            fontsize=8,
        )
        level += amount
        labels.append(name)
    ax.bar(len(labels), _major(closing, cur), color="#37474f")
    labels.append("closing")
    ax.set_xticks(range(len(labels)), labels, rotation=20)
    ax.set_ylabel(f"MRR ({cur})")
    first = rows[0]["month"].strftime("%b %Y") if rows else ""
    ax.set_title(f"MRR bridge {first} - {metrics.as_of:%d %b %Y} ({cur}, constant rates)")
    ax.yaxis.set_major_formatter("{x:,.0f}")
    return _png(fig)


def cohort_heatmap_png(metrics: Metrics) -> bytes:
    """Logo retention by first-paid-month cohort (rows) and months since (columns); the
    pre-history cohort (first revenue before the invoice history) first, aged from the
    window's opening."""
    rows = metrics.cohorts.to_pylist()
    cohorts = sorted({r["label"] for r in rows}, key=lambda c: (c != "pre-history", c))
    ages = max((r["age"] for r in rows), default=0) + 1
    grid = [[float("nan")] * ages for _ in cohorts]
    sizes = {}
    for r in rows:
        grid[cohorts.index(r["label"])][r["age"]] = r["logo_retention"] * 100
        sizes[r["label"]] = r["customers"]
    fig = Figure(figsize=(max(6.0, 0.55 * ages + 2), max(3.0, 0.38 * len(cohorts) + 1.5)))
    ax = fig.add_subplot()
    image = ax.imshow(grid or [[float("nan")]], cmap="YlGn", vmin=0, vmax=100, aspect="auto")
    for y, line in enumerate(grid):
        for x, value in enumerate(line):
            if value == value:  # not NaN
                ax.text(x, y, f"{value:.0f}", ha="center", va="center", fontsize=7)
    ax.set_yticks(range(len(cohorts)), [f"{c} (n={sizes[c]})" for c in cohorts], fontsize=8)
    ax.set_xticks(range(ages), [str(a) for a in range(ages)], fontsize=8)
    ax.set_xlabel("months since first paid invoice (pre-history: since the window opened)")
    ax.set_title(f"Logo retention % by cohort, as of {metrics.as_of:%d %b %Y}")
    fig.colorbar(image, ax=ax, fraction=0.03)
    return _png(fig)


def markdown_image(png: bytes, alt: str) -> str:
    """A Markdown image with the PNG inline as a data URI (Dagster renders it)."""
    return f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode()})"
