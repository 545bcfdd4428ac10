"""A hand-built golden book where every movement kind and edge case happens to exactly one
customer, with the expected figures worked out by hand (docs/analytics.md's rules).

Window: as of 2025-06-30, 6 months (Jan-Jun 2025); the opening sample is 2024-12-31.

A  USD  monthly 10 seats x 10.00; upgraded to 15 seats on 15 Mar (proration line 5 seats
        for 17 of 31 days = 27.42; normalised 2742 * 31 / 17 = 5000.1 -> 50.00)
        -> expansion +5000 in March
B  EUR  flat 200.00 monthly; no invoices for March and April (paused, then resumed)
        -> churned -20000 EUR in March, reactivation +20000 EUR in May
C  USD  annual 1200.00 with 10 % discount from 10 Feb 2025 (108000 / 12 = 9000)
        -> new +9000 in February
D  GBP  trial 20 Mar - 3 Apr, then 2 seats x 50.00 monthly from 3 Apr
        -> new +10000 GBP in April (trialing in March: zero)
E  USD  first subscription canceled (end 1 Feb 2025, last invoice written off), new one from
        1 Apr at 70.00 -> churned -5000 in Feb (involuntary), reactivation +7000 in April
F  USD  graduated 8 units (5 x 10.00 + 3 x 5.00 = 65.00, 10 % off = 58.50) plus usage at
        0.10; no invoices before May (current price used), usage May 3000 then June 1000
        -> June counts May's closed usage: usage +3000 in June (usage MRR is its own
        line and movement; recurring MRR 58.50 throughout)
G  USD  quarterly 30 seats x 10.00, downgraded to 24 seats from the April quarter
        -> contraction -2000 in April
H  USD  monthly 40.00, paused on 10 May (invoice for May exists): zero from 10 May
        -> paused -4000 in May (a paused subscription is not churn; 40.00 paused MRR
        from May on, H still a customer)
I  USD  trialing (until 4 Jul): never counts
J  USD  flat 50.00 monthly from 1 Dec 2024, paused_at 10 Mar, resume_at 1 May, status
        active again (last edited 1 May); invoiced every month except March and April
        -> paused -5000 in March (31 Mar and 30 Apr fall in the pause: 50.00 paused MRR,
        its price, though no invoice covers them), paused +5000 in May (back in service,
        May's invoice); no churn, no reactivation, J a customer (a logo) throughout.
        Unlike B, whose invoicing gap has no pause dates: churn and reactivation.

J adds 5000 to the openings of Jan, Feb, Mar and Jun and to the closings of Jan, Feb,
May and Jun (at 31 Mar and 30 Apr its 5000 is paused MRR, not MRR). March: 65589 +
expansion 5000 - EUR_REP 21739 - churned 5000 + paused -5000 = 43850 (unchanged: J's
pause takes exactly its 5000 out). May: paused -4000 (H) + 5000 (J) = +1000, closing
79247 + 5000 = 84247; June 84247 + usage 3000 = 87247. Customers at each opening one more
(J paying, or paused at 31 Mar / 30 Apr): 7, 7, 7, 6, 8, 9. USD closings 39850, 43850,
43850, 48850, 49850, 52850. J's first paid invoice (Dec 2024) is before the window and
after the book's first invoice (E's, Jun 2024): no cohort of the window; no MRR on
2024-06-30: not in the 12-month cohort.

Dunning runs (invoices due on their issue day): A's February invoice recovered at stage 1
(paid on the reminder, 2 Feb); B's February invoice open at stage 1; E's January invoice
written off at stage 3 after stages 1 and 2 failed; G's April quarter recovered at stage
2 (1 retried on 2 Apr, paid on 16 Apr: 14 days after entering stage 1). D's June invoice
carries stage 1 but no dunning run and is paid: not a recovery.

Reporting currency USD: EUR 20000 -> 20000 / 0.92 = 21739.13 -> 21739;
GBP 10000 -> 10000 / 0.79 = 12658.23 -> 12658.
"""

from __future__ import annotations

import calendar
from datetime import date
from typing import Any

from tests.analytics.conftest import customer, invoice, price, subscription

AS_OF = date(2025, 6, 30)
MONTHS = 6
EUR_REP, GBP_REP = 21739, 12658

#: Expected movements in USD reporting minor units, per month of the window.
EXPECTED_REPORTING = {
    "2025-01-01": dict(opening=61589, new=0, expansion=0, reactivation=0, contraction=0,
                       churned=0, usage=0, paused=0, closing=61589),
    "2025-02-01": dict(opening=61589, new=9000, expansion=0, reactivation=0, contraction=0,
                       churned=-5000, usage=0, paused=0, closing=65589),
    "2025-03-01": dict(opening=65589, new=0, expansion=5000, reactivation=0, contraction=0,
                       churned=-EUR_REP, usage=0, paused=-5000, closing=43850),
    "2025-04-01": dict(opening=43850, new=GBP_REP, expansion=0, reactivation=7000,
                       contraction=-2000, churned=0, usage=0, paused=0, closing=61508),
    "2025-05-01": dict(opening=61508, new=0, expansion=0, reactivation=EUR_REP, contraction=0,
                       churned=0, usage=0, paused=-4000 + 5000, closing=84247),
    "2025-06-01": dict(opening=84247, new=0, expansion=0, reactivation=0, contraction=0,
                       churned=0, usage=3000, paused=0, closing=87247),
}  # fmt: skip

#: MRR per customer at the as-of date, in its own currency's minor units.
EXPECTED_CUSTOMER_MRR = {
    ("CUS-A", "USD"): 15000,
    ("CUS-B", "EUR"): 20000,
    ("CUS-C", "USD"): 9000,
    ("CUS-D", "GBP"): 10000,
    ("CUS-E", "USD"): 7000,
    ("CUS-F", "USD"): 8850,
    ("CUS-G", "USD"): 8000,
    ("CUS-J", "USD"): 5000,
}


def _month_end(y: int, m: int) -> str:
    return date(y, m, calendar.monthrange(y, m)[1]).isoformat()


def monthly(
    prefix: str,
    sub: dict[str, Any],
    months: list[tuple[int, int]],
    lines: list[tuple[str, int]],
    **kw: Any,
) -> list[dict[str, Any]]:
    """One invoice per (year, month), service period = the calendar month."""
    out = []
    for y, m in months:
        start = date(y, m, 1).isoformat()
        out.append(
            invoice(
                f"{prefix}-{y}{m:02d}",
                sub,
                start,
                [(sku, amount, start, _month_end(y, m)) for sku, amount in lines],
                **kw,
            )
        )
    return out


def span(first: tuple[int, int], last: tuple[int, int]) -> list[tuple[int, int]]:
    out, (y, m) = [], first
    while (y, m) <= last:
        out.append((y, m))
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return out


def hand_book() -> dict[str, list[dict[str, Any]]]:
    seat = price("per_unit", unit_amount_minor=1000)
    customers = [customer(f"CUS-{c}", cur) for c, cur in
                 [("A", "USD"), ("B", "EUR"), ("C", "USD"), ("D", "GBP"), ("E", "USD"),
                  ("F", "USD"), ("G", "USD"), ("H", "USD"), ("I", "USD"),
                  ("J", "USD")]]  # fmt: skip
    subs, invs = [], []

    a = subscription("SUB-A", "CUS-A", "USD", "2024-11-01", [("SEAT", 15, seat)])
    subs.append(a)
    invs += monthly("INV-A", a, span((2024, 11), (2025, 1)), [("SEAT", 10_000)])
    # recovered by the stage-1 reminder on the day after its due date
    invs += monthly("INV-A", a, [(2025, 2)], [("SEAT", 10_000)], stage=1,
                    events=[(1, "2025-02-02", "paid")])  # fmt: skip
    invs += monthly("INV-A", a, [(2025, 3)], [("SEAT", 10_000)])
    invs.append(invoice("INV-A-PRO", a, "2025-03-15", [("SEAT", 2742, "2025-03-15", "2025-03-31")]))
    invs += monthly("INV-A", a, span((2025, 4), (2025, 6)), [("SEAT", 15_000)])

    b = subscription("SUB-B", "CUS-B", "EUR", "2024-10-01",
                     [("PLAT", 1, price("flat", flat_amount_minor=20_000))])  # fmt: skip
    subs.append(b)
    invs += monthly("INV-B", b, span((2024, 10), (2025, 1)), [("PLAT", 20_000)])
    invs += monthly("INV-B", b, [(2025, 2)], [("PLAT", 20_000)], status="open", stage=1,
                    events=[(1, "2025-02-02", None)])  # fmt: skip
    invs += monthly("INV-B", b, span((2025, 5), (2025, 6)), [("PLAT", 20_000)])

    c = subscription("SUB-C", "CUS-C", "USD", "2025-02-10",
                     [("PLAT", 1, price("flat", flat_amount_minor=120_000, discount_bps=1000))],
                     period="year")  # fmt: skip
    subs.append(c)
    invs.append(
        invoice("INV-C-1", c, "2025-02-10", [("PLAT", 108_000, "2025-02-10", "2026-02-09")])
    )

    d = subscription("SUB-D", "CUS-D", "GBP", "2025-03-20",
                     [("SEAT", 2, price("per_unit", unit_amount_minor=5000))],
                     trial_end="2025-04-03")  # fmt: skip
    subs.append(d)
    for n, (ps, pe) in enumerate([("2025-04-03", "2025-05-02"), ("2025-05-03", "2025-06-02"),
                                  ("2025-06-03", "2025-07-02")], 1):  # fmt: skip
        stage = 1 if n == 3 else 0  # paid with a stage but no dunning run: no recovery
        invs.append(invoice(f"INV-D-{n}", d, ps, [("SEAT", 10_000, ps, pe)], stage=stage))

    e1 = subscription("SUB-E1", "CUS-E", "USD", "2024-06-01",
                      [("PLAT", 1, price("flat", flat_amount_minor=5000))],
                      status="canceled", end="2025-02-01", updated="2025-02-01")  # fmt: skip
    e2 = subscription("SUB-E2", "CUS-E", "USD", "2025-04-01",
                      [("PLAT", 1, price("flat", flat_amount_minor=7000))])  # fmt: skip
    subs += [e1, e2]
    invs += monthly("INV-E1", e1, span((2024, 6), (2024, 12)), [("PLAT", 5000)])
    invs += monthly("INV-E1", e1, [(2025, 1)], [("PLAT", 5000)], status="uncollectible", stage=3,
                    events=[(1, "2025-01-02", "retried"), (2, "2025-01-16", "retried"),
                            (3, "2025-01-31", "written_off")])  # fmt: skip
    invs += monthly("INV-E2", e2, span((2025, 4), (2025, 6)), [("PLAT", 7000)])

    graduated = price("graduated", discount_bps=1000,
                      tiers=[{"up_to": 5, "unit_amount_minor": 1000},
                             {"up_to": None, "unit_amount_minor": 500}])  # fmt: skip
    f = subscription("SUB-F", "CUS-F", "USD", "2024-01-01",
                     [("STOR", 8, graduated),
                      ("API", 0, price("usage", unit_amount_minor=10))])  # fmt: skip
    subs.append(f)
    invs += monthly("INV-F", f, [(2025, 5)], [("STOR", 5850), ("API", 3000)])
    invs += monthly("INV-F", f, [(2025, 6)], [("STOR", 5850), ("API", 1000)])

    g = subscription("SUB-G", "CUS-G", "USD", "2024-10-01", [("SEAT", 24, seat)], period="quarter")
    subs.append(g)
    invs.append(invoice("INV-G-1", g, "2024-10-01", [("SEAT", 30_000, "2024-10-01", "2024-12-31")]))
    invs.append(invoice("INV-G-2", g, "2025-01-01", [("SEAT", 30_000, "2025-01-01", "2025-03-31")]))
    invs.append(invoice("INV-G-3", g, "2025-04-01", [("SEAT", 24_000, "2025-04-01", "2025-06-30")],
                        stage=2, events=[(1, "2025-04-02", "retried"),
                                         (2, "2025-04-16", "paid")]))  # fmt: skip

    h = subscription("SUB-H", "CUS-H", "USD", "2024-12-01",
                     [("PLAT", 1, price("flat", flat_amount_minor=4000))],
                     status="paused", updated="2025-05-10")  # fmt: skip
    subs.append(h)
    invs += monthly("INV-H", h, span((2024, 12), (2025, 5)), [("PLAT", 4000)])
    # a voided duplicate must not count twice
    invs += monthly("INV-HV", h, [(2025, 1)], [("PLAT", 4000)], status="void")

    i = subscription("SUB-I", "CUS-I", "USD", "2025-06-20", [("SEAT", 3, seat)],
                     status="trialing", trial_end="2025-07-04")  # fmt: skip
    subs.append(i)

    j = subscription("SUB-J", "CUS-J", "USD", "2024-12-01",
                     [("PLAT", 1, price("flat", flat_amount_minor=5000))],
                     updated="2025-05-01", paused_at="2025-03-10",
                     resume_at="2025-05-01")  # fmt: skip
    subs.append(j)
    # nothing billed for the paused months (March and April)
    invs += monthly("INV-J", j, span((2024, 12), (2025, 2)) + span((2025, 5), (2025, 6)),
                    [("PLAT", 5000)])  # fmt: skip
    return {"customer": customers, "subscription": subs, "invoice": invs}
