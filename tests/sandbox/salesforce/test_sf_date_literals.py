"""SOQL date literals: the ranges "Date Formats and Date Literals in WHERE" defines (pure
logic, on a fixed day), then through simple-salesforce against the emulator."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st
from simple_salesforce.exceptions import SalesforceMalformedRequest

from sandbox.salesforce import date_literals
from tests.sandbox.salesforce.conftest import Org, error_body, sobject

D = dt.date
MONDAY = D(2026, 12, 7)


@pytest.mark.parametrize(
    ("literal", "n", "expected"),
    [
        ("TODAY", None, (D(2026, 12, 7), D(2026, 12, 8))),
        ("YESTERDAY", None, (D(2026, 12, 6), D(2026, 12, 7))),
        ("TOMORROW", None, (D(2026, 12, 8), D(2026, 12, 9))),
        # includes today: LAST_N_DAYS:1 is yesterday and today
        ("LAST_N_DAYS", 1, (D(2026, 12, 6), D(2026, 12, 8))),
        ("LAST_90_DAYS", None, (D(2026, 9, 8), D(2026, 12, 8))),
        ("NEXT_N_DAYS", 2, (D(2026, 12, 8), D(2026, 12, 10))),
        ("N_DAYS_AGO", 3, (D(2026, 12, 4), D(2026, 12, 5))),
        # en_US weeks start on Sunday
        ("THIS_WEEK", None, (D(2026, 12, 6), D(2026, 12, 13))),
        ("LAST_WEEK", None, (D(2026, 11, 29), D(2026, 12, 6))),
        ("NEXT_N_WEEKS", 2, (D(2026, 12, 13), D(2026, 12, 27))),
        ("THIS_MONTH", None, (D(2026, 12, 1), D(2027, 1, 1))),
        ("LAST_MONTH", None, (D(2026, 11, 1), D(2026, 12, 1))),
        ("LAST_N_MONTHS", 2, (D(2026, 10, 1), D(2026, 12, 1))),
        ("THIS_QUARTER", None, (D(2026, 10, 1), D(2027, 1, 1))),
        ("NEXT_QUARTER", None, (D(2027, 1, 1), D(2027, 4, 1))),
        ("LAST_N_QUARTERS", 2, (D(2026, 4, 1), D(2026, 10, 1))),
        ("THIS_YEAR", None, (D(2026, 1, 1), D(2027, 1, 1))),
        ("THIS_FISCAL_YEAR", None, (D(2026, 1, 1), D(2027, 1, 1))),
        ("N_YEARS_AGO", 2, (D(2024, 1, 1), D(2025, 1, 1))),
    ],
)
def test_ranges(literal: str, n: int | None, expected: tuple[dt.date, dt.date]) -> None:
    assert date_literals.is_literal(literal)
    assert date_literals.takes_number(literal) == (n is not None and "90" not in literal)
    assert date_literals.days(literal, n, MONDAY) == expected


@pytest.mark.parametrize("word", ["NULL", "TRUE", "THIS_DAY", "LAST_N_HOURS", "Name"])
def test_words_that_are_not_date_literals(word: str) -> None:
    assert not date_literals.is_literal(word)


@given(
    st.dates(min_value=D(2000, 1, 1), max_value=D(2100, 1, 1)),
    st.sampled_from(["WEEK", "MONTH", "QUARTER", "YEAR", "FISCAL_QUARTER"]),
)
def test_this_last_and_next_tile_the_calendar_around_today(today: dt.date, unit: str) -> None:
    last = date_literals.days(f"LAST_{unit}", None, today)
    this = date_literals.days(f"THIS_{unit}", None, today)
    nxt = date_literals.days(f"NEXT_{unit}", None, today)
    assert last[1] == this[0] <= today < this[1] == nxt[0]
    assert last[0] < last[1] < nxt[1]


def _ids(org: Org, soql: str) -> set[str]:
    return {r["Id"] for r in org.client().query_all(soql)["records"]}


def test_date_literals_filter_records_through_the_api(org: Org) -> None:
    account = sobject(org.client(), "Account")
    made = account.create({"Name": "Made today", "Hub_Id__c": "CUS-DL1"})["id"]
    assert made in _ids(org, "SELECT Id FROM Account WHERE CreatedDate = TODAY")
    assert made in _ids(org, "SELECT Id FROM Account WHERE LastModifiedDate = LAST_N_DAYS:3")
    assert made in _ids(org, "SELECT Id FROM Account WHERE CreatedDate >= THIS_MONTH")
    assert made not in _ids(org, "SELECT Id FROM Account WHERE CreatedDate < TODAY")
    assert made not in _ids(org, "SELECT Id FROM Account WHERE CreatedDate = YESTERDAY")
    assert made in _ids(org, "SELECT Id FROM Account WHERE CreatedDate != YESTERDAY")


def test_a_literal_that_needs_a_number_says_so(org: Org) -> None:
    with pytest.raises(SalesforceMalformedRequest) as caught:
        org.client().query("SELECT Id FROM Account WHERE CreatedDate = LAST_N_DAYS")
    [error] = error_body(caught.value)
    assert error["errorCode"] == "MALFORMED_QUERY" and "LAST_N_DAYS:7" in error["message"]
