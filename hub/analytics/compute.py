"""Subscription metrics in DuckDB: MRR at month ends, its movements, retention, cohorts,
CLTV and dunning recovery. Every step is one SQL statement over the ``a_*`` views
(``hub.analytics.frames``); Python only sees the month-level aggregates.

How MRR is reconstructed from the golden record (a snapshot of *current* state plus the
invoice history): see docs/analytics.md, which is the definition finance audits. In short,
for each subscription and each sample date S (the end of each month of the window, and
the as-of date for the last month):

1. zero unless S is in paid service: on or after ``start_date`` and ``trial_end``, before
   ``end_date``, not ``trialing``, not ``canceled`` without an end date since the record's
   last change, and not paused: from ``paused_at`` to the day before ``resume_at``
   whatever the status today (a ``paused`` status without ``paused_at``: since the
   record's last change). A paused subscription's recurring MRR is paused MRR instead;
2. if an invoice line's service period covers S: the non-usage lines covering S, each
   normalised to a month (whole-month periods / their month count, partial periods such as
   prorations by days against a full billing period), plus usage;
3. before the first invoiced period or after the last one (history older than the invoice
   record; next invoice not out yet): the price of each non-usage item version in effect
   on S (``effective_from`` <= S <= ``effective_to``; ``Price.amount_minor``
   re-implemented in SQL, discount included) / billing months, plus usage;
4. a gap between invoiced periods (a lapse): zero (in a pause: the price, as paused MRR);

where usage = each usage item's invoiced amount of its last *closed* period (ending
before S), normalised likewise. A subscription never counts below zero.
"""

# ruff: noqa: S608 - SQL is assembled from fixed fragments and quoted identifiers only;
# dates and numbers go in as bound parameters or registered Arrow tables, or as literals
# formatted from ``date``/``int`` values (the sample dates, list positions).

from __future__ import annotations

import calendar
from dataclasses import dataclass, field
from datetime import date, timedelta
from fractions import Fraction
from typing import Any

import duckdb
import pyarrow as pa

from hub.analytics.rates import RateTable, half_even_div, reporting_currency

MOVEMENTS = ("new", "expansion", "reactivation", "contraction", "churned", "usage", "paused")
DEFAULT_MONTHS = 12
DEFAULT_MARGIN = 0.8

_MACROS = """
CREATE OR REPLACE TEMP MACRO hdiv(a, b) AS (
    ((a::HUGEINT - (((a::HUGEINT % b) + b) % b)) // b)
    + CASE WHEN 2 * (((a::HUGEINT % b) + b) % b) > b
             OR (2 * (((a::HUGEINT % b) + b) % b) = b
                 AND ((a::HUGEINT - (((a::HUGEINT % b) + b) % b)) // b) % 2 <> 0)
           THEN 1 ELSE 0 END
);
CREATE OR REPLACE TEMP MACRO gross_amount(kind, flat, unit, tiers, qty) AS (
    CASE kind
        WHEN 'flat' THEN flat::HUGEINT
        WHEN 'volume' THEN
            list_filter(tiers, lambda t: t.up_to IS NULL OR qty <= t.up_to)[1]
                .flat_amount_minor::HUGEINT
            + list_filter(tiers, lambda t: t.up_to IS NULL OR qty <= t.up_to)[1]
                .unit_amount_minor::HUGEINT * qty
        WHEN 'graduated' THEN coalesce(list_sum(list_transform(tiers, lambda t, k:
            CASE WHEN qty > (CASE WHEN k = 1 THEN 0 ELSE tiers[k - 1].up_to END)
                 THEN t.flat_amount_minor::HUGEINT + t.unit_amount_minor::HUGEINT
                      * (least(qty, coalesce(t.up_to, qty))
                         - (CASE WHEN k = 1 THEN 0 ELSE tiers[k - 1].up_to END))
                 ELSE 0::HUGEINT END)), 0::HUGEINT)
        ELSE flat::HUGEINT + unit::HUGEINT * qty  -- per_unit, usage
    END
);
CREATE OR REPLACE TEMP MACRO net_amount(gross, bps) AS (
    gross - (gross * bps + 5000) // 10000  -- Price.amount_minor: discount half up
);
"""


def sample_dates(as_of: date, months: int) -> list[tuple[int, date, date]]:
    """``(i, sample date, month)``: i = 0 is the window's opening (the day before its first
    month), 1..months the end of each month, the last one being ``as_of`` itself."""
    if months < 1:
        raise ValueError("months must be at least 1")
    first = _add_months(as_of.replace(day=1), -(months - 1))
    out = [(0, first - timedelta(days=1), _add_months(first, -1))]
    for i in range(1, months + 1):
        month = _add_months(first, i - 1)
        end = month.replace(day=calendar.monthrange(month.year, month.month)[1])
        out.append((i, as_of if i == months else end, month))
    return out


def _add_months(day: date, n: int) -> date:
    total = day.year * 12 + day.month - 1 + n
    return date(total // 12, total % 12 + 1, 1)


@dataclass
class Metrics:
    """Everything one recompute produced. Money columns are integer minor units: ``*_minor``
    in the row's own currency, ``*_rep`` in the reporting currency."""

    as_of: date
    months: int
    reporting_currency: str
    gross_margin: float
    rates_source: str
    summary: dict[str, Any]
    movements: pa.Table
    movements_by_currency: pa.Table
    mrr_by_currency: pa.Table
    customer_mrr: pa.Table
    cohorts: pa.Table
    dunning: pa.Table
    revenue_lost: pa.Table
    counts: dict[str, int] = field(default_factory=dict)

    def identity_errors(self) -> list[str]:
        """Every month (reporting and per currency) where opening + movements != closing,
        where a month's opening is not the previous closing, or where the last closing is
        not the MRR snapshot. Empty when the books balance."""
        errors = []
        tables = [("reporting " + self.reporting_currency, self.movements.to_pylist())]
        by_cur: dict[str, list[dict[str, Any]]] = {}
        for row in self.movements_by_currency.to_pylist():
            by_cur.setdefault(row["currency"], []).append(row)
        tables += [(cur, rows) for cur, rows in sorted(by_cur.items())]
        for label, rows in tables:
            rows = sorted(rows, key=lambda r: r["month"])
            for prev, row in zip([None, *rows], rows, strict=False):
                moved = sum(row[m] for m in MOVEMENTS)
                if row["opening"] + moved != row["closing"]:
                    errors.append(
                        f"{label} {row['month']}: opening {row['opening']} + movements "
                        f"{moved} != closing {row['closing']}"
                    )
                if prev is not None and prev["closing"] != row["opening"]:
                    errors.append(
                        f"{label} {row['month']}: opening {row['opening']} != previous "
                        f"closing {prev['closing']}"
                    )
        last = self.movements.to_pylist()[-1] if self.movements.num_rows else None
        if last is not None and last["closing"] != self.summary["mrr_rep"]:
            errors.append(f"closing {last['closing']} != MRR snapshot {self.summary['mrr_rep']}")
        native = {r["currency"]: r["mrr_minor"] for r in self.mrr_by_currency.to_pylist()}
        for cur, rows in by_cur.items():
            closing = max(rows, key=lambda r: r["month"])["closing"]
            if closing != native.get(cur, 0):
                errors.append(f"{cur}: closing {closing} != MRR snapshot {native.get(cur, 0)}")
        return errors

    def as_dict(self, *, customers: bool = False) -> dict[str, Any]:
        """JSON-ready (dates as ISO strings); per-customer rows only when asked for."""
        out: dict[str, Any] = {
            "as_of": self.as_of.isoformat(),
            "months": self.months,
            "reporting_currency": self.reporting_currency,
            "gross_margin": self.gross_margin,
            "rates_source": self.rates_source,
            "counts": self.counts,
            "summary": self.summary,
            "movements": _rows(self.movements),
            "movements_by_currency": _rows(self.movements_by_currency),
            "mrr_by_currency": _rows(self.mrr_by_currency),
            "cohorts": _rows(self.cohorts),
            "dunning": _rows(self.dunning),
            "revenue_lost": _rows(self.revenue_lost),
        }
        if customers:
            out["customer_mrr"] = _rows(self.customer_mrr)
        return out


def _rows(table: pa.Table) -> list[dict[str, Any]]:
    return [
        {k: v.isoformat() if isinstance(v, date) else v for k, v in row.items()}
        for row in table.to_pylist()
    ]


def compute_metrics(
    con: duckdb.DuckDBPyConnection,
    as_of: date,
    *,
    months: int = DEFAULT_MONTHS,
    reporting: str | None = None,
    rates: RateTable | None = None,
    gross_margin: float = DEFAULT_MARGIN,
) -> Metrics:
    """All metrics as of ``as_of`` over the ``months`` calendar months ending with its
    month, from the ``a_*`` views in ``con``.

    Money is computed in 64-bit integers (BIGINT), which DuckDB checks for overflow; when
    an amount or an intermediate product (a price of a huge quantity, an amount times a
    long conversion factor) does not fit, the whole computation runs again in 128-bit
    integers, so results are exact either way. An amount that does not fit the 64-bit
    results even then raises :class:`OverflowError` (nothing is ever wrapped)."""
    if not 0 < gross_margin <= 1:
        raise ValueError("gross_margin must be in (0, 1]")
    reporting = reporting or reporting_currency()
    rates = rates or RateTable.load()
    samples = sample_dates(as_of, months)
    con.execute("SET TimeZone = 'UTC'")
    con.register(
        "a_samples_arrow",
        pa.table(
            {
                "i": pa.array([s[0] for s in samples], pa.int32()),
                "s": pa.array([s[1] for s in samples], pa.date32()),
                "month": pa.array([s[2] for s in samples], pa.date32()),
            }
        ),
    )
    con.execute("CREATE OR REPLACE TEMP TABLE a_samples AS SELECT * FROM a_samples_arrow")
    currencies = [
        r[0]
        for r in con.execute(
            "SELECT DISTINCT currency FROM a_subs UNION SELECT DISTINCT currency FROM a_invoices"
        ).fetchall()
        if r[0] is not None
    ]
    factors = rates.factors(currencies, reporting)
    con.register("a_fx_arrow", factors)
    fits = all(
        abs(int(v)) <= _INT64_MAX for col in ("num", "den") for v in factors[col].to_pylist()
    )
    try:
        if fits:
            try:
                tables = _compute(con, samples, as_of, "BIGINT")
            except (duckdb.OutOfRangeException, duckdb.ConversionException) as exc:
                if not _is_overflow(exc):
                    raise
                tables = None
        else:
            tables = None
        if tables is None:
            try:
                tables = _compute(con, samples, as_of, "HUGEINT")
            except (duckdb.OutOfRangeException, duckdb.ConversionException) as exc:
                if not _is_overflow(exc):
                    raise
                raise OverflowError(
                    "an amount is beyond the 64-bit range of integer minor units "
                    f"(|amount| <= {_INT64_MAX:,}); nothing was rounded or wrapped: {exc}"
                ) from exc
    finally:
        for table in _TEMP_TABLES:
            con.execute(f"DROP TABLE IF EXISTS {table}")
    movements, by_currency, customer_mrr, mrr_by_currency, cohorts, dunning, lost, c12, dun = tables
    summary = _summary(
        movements, mrr_by_currency, dun, lost, reporting, Fraction(str(gross_margin))
    )
    summary.update(_cohort_12m(c12, as_of))
    summary["currency_basis"] = (
        f"constant currency: every month converted at one rate table ({rates.source})"
    )
    summary["rates_period"] = (
        dict.fromkeys(_MONTHLY, "monthly")
        | dict.fromkeys(_WINDOW, "monthly, pooled over the window")
        | {"nrr_12m": "12 months", "grr_12m": "12 months"}
    )
    counts = {
        name: int(con.execute(f"SELECT count(*) FROM {view}").fetchone()[0])  # type: ignore[index]
        for name, view in (
            ("subscriptions", "a_subs"),
            ("invoices", "a_invoices"),
            ("customers", "a_customers"),
        )
    }
    return Metrics(
        as_of=as_of,
        months=months,
        reporting_currency=reporting,
        gross_margin=gross_margin,
        rates_source=rates.source,
        summary=summary,
        movements=movements,
        movements_by_currency=by_currency,
        mrr_by_currency=mrr_by_currency,
        customer_mrr=customer_mrr,
        cohorts=cohorts,
        dunning=dunning,
        revenue_lost=lost,
        counts=counts,
    )


_INT64_MAX = 2**63 - 1
#: Every intermediate table of one recompute, dropped as soon as it has been read (and
#: in any case when the recompute ends).
_TEMP_TABLES = ("m_line", "m_key", "m_cust", "m_dunning")


def _is_overflow(exc: duckdb.Error) -> bool:
    """DuckDB's integer overflow ("Overflow in multiplication of INT64") or an out-of-range
    cast ("... is out of range for the destination type INT64")."""
    text = str(exc).lower()
    return "overflow" in text or "out of range" in text


_MONTHLY = ("logo_churn_rate", "gross_revenue_churn_rate", "net_revenue_retention",
            "gross_revenue_retention")  # fmt: skip
_WINDOW = tuple(f"window_{k}" for k in _MONTHLY)


def year_before(day: date) -> date:
    """The same day 12 months earlier (29 February -> 28 February)."""
    last = calendar.monthrange(day.year - 1, day.month)[1]
    return date(day.year - 1, day.month, min(day.day, last))


def _compute(
    con: duckdb.DuckDBPyConnection,
    samples: list[tuple[int, date, date]],
    as_of: date,
    int_type: str,
) -> tuple[
    pa.Table,
    pa.Table,
    pa.Table,
    pa.Table,
    pa.Table,
    pa.Table,
    pa.Table,
    dict[str, int],
    dict[str, Any],
]:
    """Every table of :class:`Metrics`, money in ``int_type`` (BIGINT or HUGEINT); the
    12-month cohort's figures and the dunning totals."""
    con.execute(_MACROS.replace("HUGEINT", int_type))
    effective = _optional(con, "a_items", {"effective_from": "DATE", "effective_to": "DATE"})
    tax = _optional(con, "a_invoices", {"tax_minor": "BIGINT"})
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE a_fx AS SELECT currency, num::{int_type} AS num, "
        f"den::{int_type} AS den FROM a_fx_arrow"
    )
    # the 12-month cohort's sample: a sample of the window when it is one, else an extra
    # one after them (read by nothing but the 12-month retention)
    then = year_before(as_of)
    days = [s for _, s, _ in samples]
    extra = [] if then in days else [then]
    _mrr_keys(con, samples, int_type, extra, effective)
    last = len(samples)  # the as-of sample's position in the 1-based lists
    p0 = days.index(then) + 1 if then in days else last + 1
    row = con.execute(
        f"""
        SELECT count(*), coalesce(sum(r0), 0)::BIGINT, coalesce(sum(r1), 0)::BIGINT,
               coalesce(sum(least(r0, r1)), 0)::BIGINT
        FROM (SELECT amt[{p0}] - use[{p0}] AS r0, amt[{last}] - use[{last}] AS r1 FROM m_cust)
        WHERE r0 > 0
        """
    ).fetchall()[0]
    c12 = dict(zip(("customers", "then", "now", "kept"), map(int, row), strict=True))
    opening_day = samples[0][1]
    movements = _movements(con, ["customer_id"], [], "m_cust", "amt", opening_day)
    by_currency = _movements(con, ["customer_id", "currency"], ["currency"], "m_key", "mrr",
                             opening_day, usage="use", paused="pz")  # fmt: skip
    customer_mrr = con.sql(
        f"""
        SELECT m.customer_id, c.legal_name, c.segment, m.currency,
               m.mrr[{last}]::BIGINT AS mrr_minor, m.rep[{last}]::BIGINT AS mrr_rep,
               m.use[{last}]::BIGINT AS usage_mrr_minor, m.urep[{last}]::BIGINT AS usage_mrr_rep
        FROM m_key m LEFT JOIN a_customers c USING (customer_id)
        WHERE m.mrr[{last}] <> 0
        ORDER BY m.rep[{last}] DESC, m.customer_id, m.currency
        """
    ).to_arrow_table()
    mrr_by_currency = con.sql(
        f"""
        SELECT currency, count(DISTINCT customer_id) AS customers,
               sum(mrr[{last}])::BIGINT AS mrr_minor,
               (12 * sum(mrr[{last}]))::BIGINT AS arr_minor,
               sum(rep[{last}])::BIGINT AS mrr_rep,
               sum(use[{last}])::BIGINT AS usage_mrr_minor,
               sum(urep[{last}])::BIGINT AS usage_mrr_rep
        FROM m_key WHERE mrr[{last}] <> 0
        GROUP BY currency ORDER BY mrr_rep DESC, currency
        """
    ).to_arrow_table()
    con.execute("DROP TABLE m_key")
    cohorts = _cohorts(con)
    con.execute("DROP TABLE m_cust")
    dunning, lost, dun = _dunning(con, opening_day, as_of, tax)
    return movements, by_currency, customer_mrr, mrr_by_currency, cohorts, dunning, lost, c12, dun


def _cohort_12m(c12: dict[str, int], as_of: date) -> dict[str, Any]:
    """NRR and GRR of the customers with recurring MRR 12 months before ``as_of``: their
    recurring MRR now over then, and with each capped at then (GRR)."""
    then = c12["then"]
    return {
        "nrr_12m": _ratio(c12["now"], then),
        "grr_12m": _ratio(c12["kept"], then),
        "cohort_12m": {
            "date": year_before(as_of).isoformat(),
            "customers": c12["customers"],
            "recurring_mrr_then_rep": then,
            "recurring_mrr_now_rep": c12["now"],
            "retained_rep": c12["kept"],
        },
    }


def _optional(con: duckdb.DuckDBPyConnection, view: str, columns: dict[str, str]) -> str:
    """Select-list items for optional ``columns`` (name: SQL type) of ``view``: the column
    when the view has it, else a NULL of its type (the benchmark's generated tables carry
    no item versions and no tax)."""
    have = {r[0] for r in con.execute(f"DESCRIBE {view}").fetchall()}
    return ", ".join(c if c in have else f"CAST(NULL AS {t}) AS {c}" for c, t in columns.items())


def _day(day: date) -> str:
    """A date as a SQL literal (formatted from a ``date``, never from text)."""
    return f"DATE '{day.isoformat()}'"


def _paused_on(day: str) -> str:
    """SQL: the subscription ``s`` is paused on ``day`` (a SQL date), from the pause span
    :data:`_PAUSE_SPAN` puts on each subscription once (two date comparisons a sample)."""
    return f"s.pause_from <= {day} AND {day} < s.pause_to"


#: Select-list items of ``a_subs`` (with ``changed``, the day of the record's last change):
#: the days a subscription's pause starts and ends (``infinity``: none). By its pause dates
#: when it has them: from ``paused_at`` up to the day before ``resume_at`` (open-ended
#: without one), whatever its status today - one paused and resumed since was paused
#: then, one whose pause starts later is not yet. A ``paused`` status without
#: ``paused_at`` (records from before the pause dates, or a system that maps the status
#: only) is paused from the record's last change, the only date there is.
_PAUSE_SPAN = """
    coalesce(paused_at, CASE WHEN status = 'paused' THEN changed END, DATE 'infinity')
        AS pause_from,
    CASE WHEN paused_at IS NULL THEN DATE 'infinity' ELSE coalesce(resume_at, DATE 'infinity')
    END AS pause_to"""


def _mrr_keys(
    con: duckdb.DuckDBPyConnection,
    samples: list[tuple[int, date, date]],
    int_type: str,
    extra: list[date],
    effective: str,
) -> None:
    """``m_key``: one row per customer and currency with MRR at some sample, ``mrr`` the
    native MRR at every sample (a list, sample i at position i + 1) and ``rep`` the same
    converted; ``m_cust``: one row per such customer, ``amt`` its reporting-currency MRR
    at every sample (the sum of its converted currencies).

    One row per subscription carries a column per sample (no subscription x sample grid
    to join): the lines covering each sample, the usage in force at each sample and the
    price of the item versions in effect at each sample, all aggregated per subscription,
    then summed per customer and currency."""
    t = int_type
    pauses = _optional(con, "a_subs", {"paused_at": "DATE", "resume_at": "DATE"})
    days = [_day(s) for _, s, _ in samples] + [_day(d) for d in extra]
    ks = range(len(days))
    window = range(len(samples))  # the extra samples come after the window's
    covered = [f"ps <= {d} AND {d} <= pe" for d in days]
    served = [
        f"{d} >= s.start_date AND (s.trial_end IS NULL OR {d} >= s.trial_end)"
        f" AND (s.end_date IS NULL OR {d} < s.end_date) AND s.status <> 'trialing'"
        for d in days
    ]
    paused = [_paused_on(d) for d in days]
    in_service = [
        f"{served[k]} AND NOT ({paused[k]})"
        f" AND NOT (s.status = 'canceled' AND s.end_date IS NULL AND {d} >= s.changed)"
        for k, d in enumerate(days)
    ]
    con.execute(
        f"""
        -- every recurring invoice line (service period known, invoice not void), monthly
        CREATE OR REPLACE TEMP TABLE m_line AS
        WITH usage_skus AS (
            SELECT sub_id, sku FROM a_items GROUP BY ALL HAVING bool_or(kind = 'usage')
        ), l AS (
            SELECT inv.subscription_id AS sub_id, l.sku, l.period_start AS ps,
                   l.period_end AS pe, l.amount_minor::{t} AS amount, s.months,
                   date_diff('month', l.period_start, l.period_end + 1) AS k
            FROM a_lines l
            JOIN a_invoices inv USING (invoice_id)
            JOIN a_subs s ON s.sub_id = inv.subscription_id
            WHERE inv.status <> 'void' AND l.period_start IS NOT NULL
              AND l.period_end IS NOT NULL AND l.period_end >= l.period_start
        )
        SELECT l.sub_id, l.sku, l.ps, l.pe, u.sku IS NOT NULL AS is_usage,
               CAST(CASE WHEN l.k >= 1 AND CAST(l.ps + to_months(l.k) AS DATE) = l.pe + 1
                    THEN hdiv(l.amount, l.k)
                    ELSE hdiv(l.amount * (CAST(l.ps + to_months(l.months) AS DATE) - l.ps),
                              (l.pe - l.ps + 1) * l.months)
               END AS {t}) AS rate
        FROM l LEFT JOIN usage_skus u ON u.sub_id = l.sub_id AND u.sku = l.sku
        """
    )
    cov_cols = ",\n".join(
        f"CAST(sum(CASE WHEN is_usage THEN 0 ELSE rate END) FILTER ({c}) AS {t}) AS c{k},"
        f" count(*) FILTER ({c}) > 0 AS v{k}"
        for k, c in zip(ks, covered, strict=True)
    )
    # the price at each sample: the non-usage item versions in effect on that day only (an
    # upgraded item's ended version never adds to its successor)
    price_cols = ",\n".join(
        f"CAST(sum(rate) FILTER ((effective_from IS NULL OR effective_from <= {d})"
        f" AND (effective_to IS NULL OR {d} <= effective_to)) AS {t}) AS p{k}"
        for k, d in zip(ks, days, strict=True)
    )
    usage_last = ",\n".join(f"arg_max_null(rate, pe) FILTER (pe < {d}) AS u{k}" for k, d in
                            zip(ks, days, strict=True))  # fmt: skip
    usage_sum = ", ".join(f"CAST(sum(u{k}) AS {t}) AS u{k}" for k in ks)
    # per sample, evaluated once: i = in paid service by status and dates; g = not in a gap
    # between invoiced periods (covered, or before the first / after the last); z = paused
    # (:func:`_paused_on`); b = the recurring part (the lines covering the sample, or
    # outside the invoiced span the price of the item versions in effect on the sample
    # day; 0 in a gap - but the price in a pause, see q below)
    sub_base = ",\n".join(
        f"""{in_service[k]} AS i{k},
            l.v{k} OR l.first_ps IS NULL OR {days[k]} < l.first_ps OR {days[k]} > l.last_pe
                AS g{k},
            ({paused[k]}) AND {served[k]} AS z{k},
            CASE WHEN l.v{k} THEN l.c{k} ELSE coalesce(p.p{k}, 0) END AS b{k}, u.u{k}"""
        for k in ks
    )
    # MRR: recurring part plus usage, in service and not in a gap, never below 0; a = in
    # service (a usage-only subscription, which may skip invoices for a month without
    # usage, by status and dates alone) or paused: a pause is not churn; w = the usage
    # counted in m (its usage items' last closed periods); q = paused: the recurring MRR a
    # paused subscription would have had, reported apart from MRR and churn - in a gap
    # too, since nothing is invoiced during a pause (the gap is the pause, not a lapse)
    sub_cols = ",\n".join(
        f"""CASE WHEN i{k} AND g{k} THEN greatest(b{k} + coalesce(u{k}, 0), 0) ELSE 0 END
                AS m{k},
            (i{k} AND (g{k} OR usage_only)) OR z{k} AS a{k},
            CASE WHEN u{k} IS NOT NULL AND i{k} AND g{k} THEN u{k} ELSE 0 END AS w{k},
            CASE WHEN z{k} THEN greatest(b{k}, 0) ELSE 0 END AS q{k}"""
        for k in ks
    )
    sums = ", ".join(
        f"CAST(sum(m{k}) AS {t}) AS m{k}, bool_or(a{k}) AS a{k}, "
        f"CAST(sum(CASE WHEN w{k} = 0 THEN 0 ELSE greatest(least(w{k}, m{k}), 0) END)"
        f" AS {t}) AS x{k}, "
        f"CAST(sum(q{k}) AS {t}) AS q{k}"
        for k in ks
    )
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE m_key AS
        WITH item AS (
            -- the price of every non-usage item version, per month (usage items are priced
            -- from invoices)
            SELECT i.sub_id, i.effective_from, i.effective_to,
                   hdiv(net_amount(gross_amount(i.kind, i.flat, i.unit, i.tiers,
                                                i.quantity::{t}), i.discount_bps),
                        s.months) AS rate
            FROM (SELECT sub_id, kind, flat, unit, tiers, quantity, discount_bps, {effective}
                  FROM a_items) i
            JOIN a_subs s USING (sub_id)
            WHERE i.kind <> 'usage'
        ), price AS (
            -- per sample: the versions in effect on that day (NULL: none)
            SELECT sub_id, {price_cols} FROM item GROUP BY sub_id
        ), cov AS (
            -- per sample: the invoiced non-usage rate of the lines covering it (v: covered
            -- at all, usage lines included); the span of the invoiced periods
            SELECT sub_id, min(ps) AS first_ps, max(pe) AS last_pe, {cov_cols}
            FROM m_line GROUP BY sub_id
        ), used AS (
            -- usage: each usage item's last closed period before each sample
            SELECT sub_id, {usage_sum}
            FROM (SELECT sub_id, sku, {usage_last}
                  FROM (SELECT sub_id, sku, pe, sum(rate) AS rate FROM m_line
                        WHERE is_usage GROUP BY ALL)
                  GROUP BY sub_id, sku)
            GROUP BY sub_id
        ), sub0 AS (
            SELECT s.customer_id, s.currency, p.sub_id IS NULL AS usage_only, {sub_base}
            FROM (SELECT *, {_PAUSE_SPAN}
                  FROM (SELECT sub_id, customer_id, currency, status, start_date, end_date,
                               trial_end, CAST(updated_at AS DATE) AS changed, {pauses}
                        FROM a_subs)) s
            LEFT JOIN cov l ON l.sub_id = s.sub_id
            LEFT JOIN price p ON p.sub_id = s.sub_id
            LEFT JOIN used u ON u.sub_id = s.sub_id
        ), sub AS (
            SELECT customer_id, currency, {sub_cols} FROM sub0
        ), cc AS (
            SELECT customer_id, currency, {sums} FROM sub GROUP BY customer_id, currency
        )
        SELECT cc.customer_id, cc.currency,
               [{", ".join(f"m{k}" for k in ks)}] AS mrr,
               [{", ".join(f"hdiv(m{k} * f.num, f.den)" for k in ks)}] AS rep,
               [{", ".join(f"a{k}" for k in ks)}] AS act,
               [{", ".join(f"x{k}" for k in ks)}] AS use,
               [{", ".join(f"hdiv(x{k} * f.num, f.den)" for k in ks)}] AS urep,
               [{", ".join(f"q{k}" for k in ks)}] AS pz,
               [{", ".join(f"hdiv(q{k} * f.num, f.den)" for k in ks)}] AS prep,
               {" OR ".join(f"m{k} <> 0 OR q{k} <> 0" for k in window)} AS inwin
        FROM cc JOIN a_fx f USING (currency)
        WHERE {" OR ".join(f"m{k} <> 0 OR q{k} <> 0" for k in ks)}
        """
    )
    con.execute("DROP TABLE m_line")
    amt = ", ".join(f"CAST(sum(rep[{k + 1}]) AS {t})" for k in ks)
    act = ", ".join(f"bool_or(act[{k + 1}])" for k in ks)
    use = ", ".join(f"CAST(sum(urep[{k + 1}]) AS {t})" for k in ks)
    pz = ", ".join(f"CAST(sum(prep[{k + 1}]) AS {t})" for k in ks)
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE m_cust AS SELECT customer_id, [{amt}] AS amt, "
        f"[{act}] AS act, [{use}] AS use, [{pz}] AS pz, bool_or(inwin) AS inwin "
        "FROM m_key GROUP BY customer_id"
    )


def _movements(
    con: duckdb.DuckDBPyConnection,
    keys: list[str],
    group: list[str],
    source: str,
    column: str,
    opening_day: date,
    *,
    usage: str = "use",
    paused: str = "pz",
) -> pa.Table:
    """Classify each key's change between consecutive samples and sum per month.

    ``source.column`` holds each key's amount at every sample (sample i at position
    i + 1), so the opening of sample i is the element before it and "had MRR at an
    earlier sample" is the position of the first positive amount: no window pass.
    A key that goes from zero to positive is a reactivation when it had MRR before: at an
    earlier sample of the window, or a subscription (in that currency, for per-currency
    keys) in paid service before the window opened; otherwise it is new.

    ``source.act`` says at each sample whether the key has a subscription in service. A
    key whose MRR falls to zero while one is in service (a usage-only subscription in a
    month without usage) contracts rather than churns, and grows back as expansion: logo
    churn needs every subscription out of service."""
    k = ", ".join(keys)
    g_sel = "".join(f"{c}, " for c in group)
    sql = f"""
        WITH before AS (
            SELECT DISTINCT {", ".join("s." + c for c in keys)}, true AS had
            FROM a_subs s
            WHERE s.status <> 'trialing'
              AND greatest(s.start_date, coalesce(s.trial_end, s.start_date)) < $opening
        ),
        invol AS (
            SELECT DISTINCT customer_id, true AS invol FROM a_invoices
            WHERE status = 'uncollectible'
        ),
        ks AS (
            SELECT {", ".join("x." + c for c in keys)}, x.{column} AS a, x.{usage} AS u,
                   x.{paused} AS q,
                   x.act, coalesce(b.had, false) AS had, coalesce(v.invol, false) AS invol,
                   -- 1-based position of the first sample with a positive amount
                   list_position(list_transform(x.{column}, lambda y: y > 0), true) AS first
            FROM {source} x LEFT JOIN before b USING ({k}) LEFT JOIN invol v USING (customer_id)
            WHERE x.inwin  -- MRR or paused MRR in the window (not only at an extra sample)
        ),
        c AS (
            SELECT {k}, smp.month, a[smp.i + 1] AS tc, a[smp.i] AS t_o,
                   u[smp.i + 1] AS uc, u[smp.i] AS uo, q[smp.i + 1] AS pc, q[smp.i] AS po,
                   a[smp.i + 1] - u[smp.i + 1] + q[smp.i + 1] AS amt,
                   a[smp.i] - u[smp.i] + q[smp.i] AS o,
                   coalesce(act[smp.i], false) AS oa, coalesce(act[smp.i + 1], false) AS ca,
                   had OR coalesce(first <= smp.i, false) AS prior, invol
            FROM ks CROSS JOIN (SELECT i, month FROM a_samples WHERE i >= 1) smp
        ),
        d AS (
            -- a customer (logo) at the opening: paying, or in service after having paid
            -- (a usage-only month without usage); at the closing likewise
            -- (or paused: a paused subscription is not churn)
            SELECT *, t_o + po > 0 OR (oa AND prior) AS lo,
                   tc + pc > 0 OR (ca AND prior) AS lc
            FROM c
        )
        -- o, amt: recurring MRR (without usage) plus paused MRR at the opening and the
        -- closing, which the movements classify; t_o, tc: MRR with usage; uo, uc: usage;
        -- po, pc: paused
        SELECT {g_sel}month,
            sum(t_o)::BIGINT AS opening,
            sum(CASE WHEN o = 0 AND amt > 0 AND NOT prior THEN amt ELSE 0 END)::BIGINT AS new,
            sum(CASE WHEN amt > o AND (o > 0 OR (oa AND prior)) THEN amt - o ELSE 0 END)::BIGINT
                AS expansion,
            sum(CASE WHEN o = 0 AND amt > 0 AND prior AND NOT oa THEN amt ELSE 0 END)::BIGINT
                AS reactivation,
            sum(CASE WHEN amt < o AND (amt > 0 OR ca) THEN amt - o ELSE 0 END)::BIGINT
                AS contraction,
            sum(CASE WHEN o > 0 AND amt = 0 AND NOT ca THEN -o ELSE 0 END)::BIGINT AS churned,
            sum(uc - uo)::BIGINT AS usage,
            sum(po - pc)::BIGINT AS paused,
            sum(tc)::BIGINT AS closing,
            sum(CASE WHEN o > 0 AND amt = 0 AND NOT ca AND invol THEN -o ELSE 0 END)::BIGINT
                AS churned_involuntary,
            count(*) FILTER (lo) AS customers_opening,
            count(*) FILTER (tc > 0 AND t_o = 0 AND NOT prior) AS customers_new,
            count(*) FILTER (lc AND NOT lo AND prior) AS customers_reactivated,
            count(*) FILTER (lo AND NOT lc) AS customers_churned,
            count(*) FILTER (tc > 0) AS customers_closing,
            count(*) FILTER (lc) AS customers_active,
            sum(t_o - uo)::BIGINT AS opening_recurring,
            sum(tc - uc)::BIGINT AS closing_recurring,
            sum(uo)::BIGINT AS opening_usage, sum(uc)::BIGINT AS closing_usage,
            count(*) FILTER (tc - uc > 0) AS customers_recurring,
            sum(po)::BIGINT AS opening_paused, sum(pc)::BIGINT AS closing_paused,
            count(*) FILTER (pc > 0 AND tc = 0) AS customers_paused,
            -- the part of paused that went on pause (a key's paused MRR grew): what
            -- retention loses; one coming back from a pause is not retention, as a
            -- reactivation is not
            sum(least(po - pc, 0))::BIGINT AS paused_begun
        FROM d GROUP BY ALL ORDER BY {g_sel}month
    """
    table = con.sql(sql, params={"opening": opening_day}).to_arrow_table()
    if not group and table.num_rows == 0:  # no revenue at all: months of zeros
        months = [r[0] for r in con.execute(
            "SELECT month FROM a_samples WHERE i >= 1 ORDER BY i").fetchall()]  # fmt: skip
        zero = [0] * len(months)
        cols: dict[str, Any] = {"month": pa.array(months, pa.date32())}
        for name in table.schema.names[1:]:
            cols[name] = pa.array(zero, table.schema.field(name).type)
        table = pa.table(cols)
    return _with_rates(table)


def _with_rates(table: pa.Table) -> pa.Table:
    """Monthly rates next to the amounts (None when nothing was open to churn)."""
    rows = table.to_pylist()
    names = ("logo_churn_rate", "gross_revenue_churn_rate", "net_revenue_retention",
             "gross_revenue_retention")  # fmt: skip
    cols: dict[str, list[float | None]] = {n: [] for n in names}
    for r in rows:
        o, oc = r["opening_recurring"], r["customers_opening"]
        lost = -(r["churned"] + r["contraction"])
        cols["logo_churn_rate"].append(_ratio(r["customers_churned"], oc))
        cols["gross_revenue_churn_rate"].append(_ratio(lost, o))
        # revenue retained: MRR going on pause is not (though it is not churn), and MRR
        # coming back from one was not in the opening (as a reactivation's is not)
        begun = r["paused_begun"]
        cols["net_revenue_retention"].append(_ratio(o - lost + r["expansion"] + begun, o))
        cols["gross_revenue_retention"].append(_ratio(o - lost + begun, o))
    for n in names:
        table = table.append_column(n, pa.array(cols[n], pa.float64()))
    return table


def _ratio(num: int, den: int) -> float | None:
    return round(num / den, 6) if den else None


def _cohorts(con: duckdb.DuckDBPyConnection) -> pa.Table:
    """Customers grouped by the month of their first paid invoice (within the window);
    for each later sample, how many still pay and how much (reporting currency).

    Customers whose first revenue predates the invoice history (a subscription in paid
    service before the book's first invoice was issued) form one cohort labelled
    ``pre-history`` (``cohort`` NULL), aged from the window's opening sample; its
    members are those with MRR or paused MRR in the window. Their first paid invoice
    says when the history starts, not when they became customers."""
    return con.sql(
        """
        WITH history AS (
            SELECT min(issue_date) AS first_issue FROM a_invoices
        ), pre AS (
            SELECT DISTINCT s.customer_id FROM a_subs s, history h
            WHERE s.status <> 'trialing'
              AND greatest(s.start_date, coalesce(s.trial_end, s.start_date)) < h.first_issue
        ), first_paid AS (
            SELECT i.customer_id, date_trunc('month', min(i.issue_date))::DATE AS cohort
            FROM a_invoices i ANTI JOIN pre p USING (customer_id)
            WHERE i.status = 'paid' GROUP BY i.customer_id
        ), members AS (
            SELECT f.customer_id, f.cohort, smp.i AS ci
            FROM first_paid f JOIN a_samples smp ON smp.month = f.cohort AND smp.i >= 1
            UNION ALL
            SELECT p.customer_id, NULL::DATE, 0
            FROM pre p JOIN m_cust x USING (customer_id) WHERE x.inwin
        ), cells AS (
            SELECT m.cohort, smp.i - m.ci AS age, count(*) AS customers,
                   count(*) FILTER (coalesce(x.a[smp.i + 1], 0) > 0) AS active,
                   coalesce(sum(x.a[smp.i + 1]), 0)::BIGINT AS mrr_rep
            FROM members m JOIN a_samples smp ON smp.i >= m.ci
            LEFT JOIN (SELECT customer_id, amt AS a FROM m_cust) x USING (customer_id)
            GROUP BY ALL
        )
        SELECT coalesce(strftime(c.cohort, '%Y-%m'), 'pre-history') AS label,
               c.cohort, c.age, c.customers, c.active,
               round(c.active / c.customers, 6) AS logo_retention, c.mrr_rep,
               CASE WHEN b.mrr_rep > 0 THEN round(c.mrr_rep / b.mrr_rep, 6) END
                   AS revenue_retention
        FROM cells c JOIN cells b ON b.cohort IS NOT DISTINCT FROM c.cohort AND b.age = 0
        ORDER BY c.cohort NULLS FIRST, c.age
        """
    ).to_arrow_table()


def _dunning_events(con: duckdb.DuckDBPyConnection) -> str:
    """The dunning events to read: ``a_dunning``, or none when the producer has no such
    view (then no invoice is in dunning)."""
    found = "SELECT table_name FROM duckdb_tables() UNION ALL SELECT view_name FROM duckdb_views()"
    have = {r[0] for r in con.execute(found).fetchall()}
    if "a_dunning" in have:
        return "a_dunning"
    return (
        "(SELECT NULL::VARCHAR AS invoice_id, NULL::BIGINT AS stage, NULL::DATE AS reached_on, "
        "NULL::VARCHAR AS outcome WHERE false)"
    )


def _dunning(
    con: duckdb.DuckDBPyConnection, opening_day: date, as_of: date, tax: str
) -> tuple[pa.Table, pa.Table, dict[str, Any]]:
    """Dunning recovery from billing's dunning events (invoices issued in the window,
    events up to ``as_of``), per stage reached and over all invoices in dunning; and
    revenue lost to uncollectible invoices per currency.

    An invoice *entered* a stage on the day of its first event at that stage; it was
    *recovered* from that stage by a later (or same-day) ``paid`` outcome, *written off*
    by a ``written_off`` one, and is *still open* otherwise (a voided invoice is counted
    apart, as ``voided``). The status of the invoice is not read for this: an invoice paid
    without a dunning run is not a recovery, and the events say when it recovered.
    Recovery rate = recovered / (invoices - voided); recovered amount = what the
    recovered invoices had paid; days to recover = from entering the stage to the
    ``paid`` event, averaged. The totals (``dunning_*`` in the summary) count each invoice
    once, from its first stage. Lost revenue: with tax (what the customers owed) and net
    of tax (the revenue written off: each invoice's unpaid amount x (total - tax) /
    total, half to even - a part payment covers tax and revenue pro rata). Amounts are
    summed per currency, then converted once."""
    params = {"start": opening_day, "end": as_of}
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE m_dunning AS
        WITH inv AS (
            SELECT invoice_id, currency, total_minor, amount_paid_minor, status
            FROM a_invoices WHERE issue_date > $start AND issue_date <= $end
        ), ev AS (
            SELECT d.invoice_id, d.stage, d.reached_on, d.outcome
            FROM {_dunning_events(con)} d SEMI JOIN inv USING (invoice_id)
            WHERE d.reached_on <= $end AND d.stage >= 1
        ), fate AS (
            SELECT invoice_id, min(reached_on) FILTER (outcome = 'paid') AS paid_on,
                   min(reached_on) FILTER (outcome = 'written_off') AS written_off_on
            FROM ev GROUP BY invoice_id
        ), entered AS (
            SELECT invoice_id, stage, min(reached_on) AS entered_on FROM ev GROUP BY ALL
        )
        SELECT e.invoice_id, e.stage, e.entered_on,
               e.stage = min(e.stage) OVER (PARTITION BY e.invoice_id) AS first_stage,
               i.currency, i.total_minor, i.amount_paid_minor,
               i.status = 'void' AS voided,
               i.status IS DISTINCT FROM 'void' AND coalesce(f.paid_on >= e.entered_on, false)
                   AS recovered,
               i.status IS DISTINCT FROM 'void'
                   AND NOT coalesce(f.paid_on >= e.entered_on, false)
                   AND coalesce(f.written_off_on >= e.entered_on, false) AS written_off,
               CASE WHEN f.paid_on >= e.entered_on THEN date_diff('day', e.entered_on, f.paid_on)
               END AS days_to_recover
        FROM entered e JOIN inv i USING (invoice_id) LEFT JOIN fate f USING (invoice_id)
        """,
        params,
    )
    per_currency = """
        SELECT {keys} currency, count(*) AS invoices, count(*) FILTER (recovered) AS recovered,
               count(*) FILTER (NOT voided AND NOT recovered AND NOT written_off) AS still_open,
               count(*) FILTER (written_off) AS written_off,
               count(*) FILTER (voided) AS voided,
               sum(total_minor) AS billed,
               sum(amount_paid_minor) FILTER (recovered) AS recovered_amount,
               sum(days_to_recover) AS days, count(days_to_recover) AS days_n
        FROM m_dunning {where} GROUP BY ALL"""
    totals = """
        sum(invoices)::BIGINT AS invoices, sum(recovered)::BIGINT AS recovered,
        sum(still_open)::BIGINT AS still_open, sum(written_off)::BIGINT AS written_off,
        sum(voided)::BIGINT AS voided,
        CASE WHEN sum(invoices) > sum(voided)
             THEN round(sum(recovered) / (sum(invoices) - sum(voided)), 6) END
            AS recovery_rate,
        sum(hdiv(billed * f.num, f.den))::BIGINT AS billed_rep,
        sum(hdiv(coalesce(recovered_amount, 0) * f.num, f.den))::BIGINT AS recovered_rep,
        CASE WHEN sum(days_n) > 0 THEN round(sum(days) / sum(days_n), 2) END
            AS days_to_recover_avg"""
    dunning = con.sql(
        f"""
        SELECT stage, {totals}
        FROM ({per_currency.format(keys="stage,", where="")}) JOIN a_fx f USING (currency)
        GROUP BY stage ORDER BY stage
        """
    ).to_arrow_table()
    overall = (
        con.sql(
            f"""
        SELECT {totals}
        FROM ({per_currency.format(keys="", where="WHERE first_stage")})
             JOIN a_fx f USING (currency)
        """
        )
        .to_arrow_table()
        .to_pylist()[0]
    )
    con.execute("DROP TABLE m_dunning")
    lost = con.sql(
        f"""
        WITH w AS (
            SELECT currency, total_minor - amount_paid_minor AS unpaid,
                   CASE WHEN total_minor > 0
                        THEN hdiv((total_minor - amount_paid_minor)
                                  * (total_minor - coalesce(tax_minor, 0)), total_minor)
                        ELSE total_minor - amount_paid_minor END AS net
            FROM (SELECT currency, total_minor, amount_paid_minor, status, issue_date, {tax}
                  FROM a_invoices)
            WHERE status = 'uncollectible' AND issue_date > $start AND issue_date <= $end
        )
        SELECT currency, count(*) AS invoices,
               sum(unpaid)::BIGINT AS lost_minor,
               hdiv(sum(unpaid) * any_value(f.num), any_value(f.den))::BIGINT AS lost_rep,
               sum(net)::BIGINT AS written_off_net_minor,
               hdiv(sum(net) * any_value(f.num), any_value(f.den))::BIGINT
                   AS written_off_net_rep
        FROM w JOIN a_fx f USING (currency)
        GROUP BY currency ORDER BY lost_rep DESC, currency
        """,
        params=params,
    ).to_arrow_table()
    return dunning, lost, overall


def _summary(
    movements: pa.Table,
    by_currency: pa.Table,
    dunning: dict[str, Any],
    lost: pa.Table,
    reporting: str,
    margin: Fraction,
) -> dict[str, Any]:
    """The headline figures; ``dunning``: the dunning totals (each invoice in dunning
    once, :func:`_dunning`)."""
    rows = movements.to_pylist()
    last = rows[-1]
    mrr = int(sum(r["mrr_rep"] for r in by_currency.to_pylist()))
    paying = int(last["customers_closing"])
    arpa = half_even_div(mrr, paying) if paying else None
    usage_mrr = int(last["closing_usage"])
    recurring_mrr = mrr - usage_mrr
    paying_recurring = int(last["customers_recurring"])
    arpa_recurring = half_even_div(recurring_mrr, paying_recurring) if paying_recurring else None
    opening_sum = sum(r["opening_recurring"] for r in rows)
    lost_mrr = -sum(r["churned"] + r["contraction"] for r in rows)
    churned_logos = sum(r["customers_churned"] for r in rows)
    opening_logos = sum(r["customers_opening"] for r in rows)
    churn = Fraction(lost_mrr, opening_sum) if opening_sum else None
    cltv: int | None = None
    if arpa_recurring is None:
        note = "undefined: no customers paying recurring MRR at the as-of date"
    elif churn is None:
        note = "undefined: no recurring MRR was open to churn in the window"
    elif churn <= 0:
        note = "undefined: no revenue churned in the window (lifetime would be infinite)"
    else:
        value = Fraction(arpa_recurring) * margin / churn
        cltv = half_even_div(value.numerator, value.denominator)
        note = (
            "recurring ARPA x gross margin / monthly gross revenue churn of recurring MRR "
            "(pooled over the window; usage excluded)"
        )
    reached = int(dunning["invoices"] or 0) - int(dunning["voided"] or 0)
    recovered = int(dunning["recovered"] or 0)
    return {
        "currency": reporting,
        "mrr_rep": mrr,
        "arr_rep": 12 * mrr,
        "paying_customers": paying,
        "arpa_rep": arpa,
        "recurring_mrr_rep": recurring_mrr,
        "usage_mrr_rep": usage_mrr,
        "paying_customers_recurring": paying_recurring,
        "arpa_recurring_rep": arpa_recurring,
        "month": last["month"].isoformat(),
        "month_movements": {m: int(last[m]) for m in ("opening", *MOVEMENTS, "closing")},
        "logo_churn_rate": last["logo_churn_rate"],
        "gross_revenue_churn_rate": last["gross_revenue_churn_rate"],
        "net_revenue_retention": last["net_revenue_retention"],
        "gross_revenue_retention": last["gross_revenue_retention"],
        "window_logo_churn_rate": _ratio(churned_logos, opening_logos),
        "window_gross_revenue_churn_rate": None if churn is None else round(float(churn), 6),
        "window_net_revenue_retention": _ratio(
            opening_sum - lost_mrr + sum(r["expansion"] + r["paused_begun"] for r in rows),
            opening_sum,
        ),
        "window_gross_revenue_retention": _ratio(
            opening_sum - lost_mrr + sum(r["paused_begun"] for r in rows), opening_sum
        ),
        "paused_mrr_rep": int(last["closing_paused"]),
        "paused_customers": int(last["customers_paused"]),
        "month_paused_rep": int(last["paused"]),
        "gross_margin": float(margin),
        "cltv_rep": cltv,
        "cltv_note": note,
        "dunning_invoices": reached,
        "dunning_recovered": recovered,
        "dunning_recovery_rate": _ratio(recovered, reached),
        "dunning_written_off": int(dunning["written_off"] or 0),
        "dunning_still_open": int(dunning["still_open"] or 0),
        "dunning_recovered_rep": int(dunning["recovered_rep"] or 0),
        "dunning_days_to_recover_avg": dunning["days_to_recover_avg"],
        "revenue_lost_rep": int(sum(r["lost_rep"] for r in lost.to_pylist())),
        "revenue_written_off_net_rep": int(sum(r["written_off_net_rep"] for r in lost.to_pylist())),
        "churned_involuntary_rep": int(sum(r["churned_involuntary"] for r in rows)),
    }
