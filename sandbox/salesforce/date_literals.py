"""SOQL date literals (``TODAY``, ``LAST_N_DAYS:30``, ``THIS_QUARTER``...): each names a
range of days relative to today, as "Date Formats and Date Literals in WHERE" defines them.

The org's locale is en_US (weeks start on Sunday), its time zone UTC, and its fiscal year
the default one (starting in January), so the fiscal literals are the calendar ones.

A literal is a half-open range of days ``[start, end)``; the comparison decides what is
kept: ``=`` inside it, ``!=`` outside, ``<`` before its start, ``<=`` before its end,
``>`` from its end on, ``>=`` from its start on."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable

Days = tuple[dt.date, dt.date]

_UNITS = ("DAYS", "WEEKS", "MONTHS", "QUARTERS", "YEARS", "FISCAL_QUARTERS", "FISCAL_YEARS")
#: the literals that take a number: LAST_N_DAYS:n, NEXT_N_WEEKS:n, N_YEARS_AGO:n ...
_WITH_N = re.compile(r"^(?:(LAST|NEXT)_N_(\w+)|N_(\w+)_AGO)$")


def _months(day: dt.date, months: int) -> dt.date:
    """The first of the month ``months`` after ``day``'s month."""
    index = day.year * 12 + day.month - 1 + months
    return dt.date(index // 12, index % 12 + 1, 1)


def _period(unit: str, today: dt.date) -> tuple[dt.date, Callable[[int], dt.date]]:
    """The start of the current ``unit`` and a function giving the start ``k`` units
    later (or earlier, for negative ``k``)."""
    unit = unit.removeprefix("FISCAL_").removesuffix("S")
    if unit == "DAY":
        return today, lambda k: today + dt.timedelta(days=k)
    if unit == "WEEK":
        start = today - dt.timedelta(days=(today.weekday() + 1) % 7)  # Sunday
        return start, lambda k: start + dt.timedelta(weeks=k)
    months = {"MONTH": 1, "QUARTER": 3, "YEAR": 12}[unit]
    first = _months(today.replace(day=1), -((today.month - 1) % months))
    return first, lambda k: _months(first, k * months)


def is_literal(name: str) -> bool:
    """Whether ``name`` (upper case, without ``:n``) is a date literal."""
    if name in ("YESTERDAY", "TODAY", "TOMORROW", "LAST_90_DAYS", "NEXT_90_DAYS"):
        return True
    match = _WITH_N.match(name)
    if match:
        return (match.group(2) or match.group(3)) in _UNITS
    head, _, unit = name.partition("_")
    return head in ("LAST", "THIS", "NEXT") and f"{unit}S" in _UNITS and unit != "DAY"


def takes_number(name: str) -> bool:
    return _WITH_N.match(name) is not None


def days(name: str, n: int | None, today: dt.date) -> Days:
    """The range of days ``name`` (with its ``n``) covers, seen on ``today``."""
    if name in ("YESTERDAY", "TODAY", "TOMORROW"):
        shift = ("YESTERDAY", "TODAY", "TOMORROW").index(name) - 1
        day = today + dt.timedelta(days=shift)
        return day, day + dt.timedelta(days=1)
    if name in ("LAST_90_DAYS", "NEXT_90_DAYS"):
        name, n = f"{name[:4]}_N_DAYS", 90
    match = _WITH_N.match(name)
    if match:
        count = n or 0
        if match.group(3):  # N_<UNIT>_AGO: the one unit that started ``count`` ago
            _, at = _period(match.group(3), today)
            return at(-count), at(-count + 1)
        direction, unit = match.group(1), match.group(2)
        _, at = _period(unit, today)
        if unit == "DAYS" and direction == "LAST":
            return at(-count), at(1)  # LAST_N_DAYS includes today: LAST_N_DAYS:1 is 2 days
        return (at(-count), at(0)) if direction == "LAST" else (at(1), at(1 + count))
    direction, _, unit = name.partition("_")
    _, at = _period(unit, today)
    shift = {"LAST": -1, "THIS": 0, "NEXT": 1}[direction]
    return at(shift), at(shift + 1)


def as_datetimes(span: Days) -> tuple[dt.datetime, dt.datetime]:
    """The range as UTC instants (midnight to midnight)."""
    start, end = span
    return (
        dt.datetime(start.year, start.month, start.day, tzinfo=dt.UTC),
        dt.datetime(end.year, end.month, end.day, tzinfo=dt.UTC),
    )
