"""Listing products: both pagination types, limits, every search operator, single gets,
families."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from sandbox.pim import seed_records
from tests.sandbox.pim.conftest import Pim, identifiers, product, search

pytestmark = pytest.mark.timeout(60)
PRODUCTS = "/api/rest/v1/products"
ALL = [f"P-{i:03d}" for i in range(30)]
STAMP = "2024-03-01 12:{:02d}:00"


def test_default_pagination_is_by_page_of_ten_with_links(seeded: Pim) -> None:
    client = seeded.client()
    first = client.get(PRODUCTS)
    body = first.json()
    assert body["current_page"] == 1
    assert identifiers(first) == ALL[:10]
    assert "previous" not in body["_links"]
    second = client.get(body["_links"]["next"]["href"]).json()
    assert second["current_page"] == 2
    assert [i["identifier"] for i in second["_embedded"]["items"]] == ALL[10:20]
    assert "page=1" in second["_links"]["previous"]["href"]
    last = client.get(PRODUCTS, params={"page": 3, "with_count": "true"}).json()
    assert last["items_count"] == 30
    assert "next" not in last["_links"]
    beyond = client.get(PRODUCTS, params={"page": 9}).json()
    assert beyond["_embedded"]["items"] == []


def test_search_after_follows_next_links_through_everything(seeded: Pim) -> None:
    client = seeded.client()
    url: str | None = PRODUCTS
    params: dict[str, Any] | None = {"pagination_type": "search_after", "limit": 7}
    seen: list[str] = []
    pages = 0
    while url:
        body = client.get(url, params=params).json()
        assert "current_page" not in body
        seen += [i["identifier"] for i in body["_embedded"]["items"]]
        # params=None: httpx replaces a URL's query with any params given, even {}
        url, params, pages = body["_links"].get("next", {}).get("href"), None, pages + 1
    assert seen == ALL
    assert pages == 5
    item = client.get(PRODUCTS, params={"pagination_type": "search_after", "limit": 1}).json()
    first = item["_embedded"]["items"][0]
    assert first["_links"]["self"]["href"].endswith("/api/rest/v1/products/P-000")
    assert set(first) >= {
        "identifier",
        "enabled",
        "family",
        "categories",
        "groups",
        "parent",
        "values",
        "created",
        "updated",
    }
    assert first["updated"] == "2024-03-01T12:00:00+00:00"


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"limit": "101"}, "You cannot request more than 100 items."),
        ({"limit": "0"}, '"0" is not a valid limit number.'),
        ({"limit": "ten"}, '"ten" is not a valid limit number.'),
        ({"page": "-1"}, '"-1" is not a valid page number.'),
        ({"pagination_type": "offset"}, "Pagination type does not exist."),
    ],
)
def test_bad_paging_parameters_answer_422(
    seeded: Pim, params: dict[str, str], message: str
) -> None:
    response = seeded.client().get(PRODUCTS, params=params)
    assert response.status_code == 422
    assert response.json() == {"code": 422, "message": message}


def test_limit_100_is_allowed(seeded: Pim) -> None:
    response = seeded.client().get(PRODUCTS, params={"limit": 100})
    assert identifiers(response) == ALL


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"updated": [{"operator": ">", "value": "2024-03-01 12:27:00"}]}, ALL[28:]),
        ({"updated": [{"operator": "<", "value": "2024-03-01 12:02:00"}]}, ALL[:2]),
        (
            {
                "updated": [
                    {"operator": "BETWEEN", "value": ["2024-03-01 12:05:00", "2024-03-01 12:07:00"]}
                ]
            },
            ALL[5:8],
        ),
        (
            {
                "updated": [
                    {
                        "operator": "NOT BETWEEN",
                        "value": ["2024-03-01 12:01:00", "2024-03-01 12:28:00"],
                    }
                ]
            },
            [ALL[0], ALL[29]],
        ),
        (
            {
                "updated": [
                    {"operator": ">", "value": "2024-03-01 12:03:00"},
                    {"operator": "<", "value": "2024-03-01 12:06:00"},
                ]
            },
            ALL[4:6],
        ),
        ({"updated": [{"operator": "=", "value": "2024-03-01 12:04:00"}]}, [ALL[4]]),
        (
            {"identifier": [{"operator": "IN", "value": ["P-003", "P-017", "NOPE"]}]},
            ["P-003", "P-017"],
        ),
        ({"identifier": [{"operator": "STARTS WITH", "value": "P-00"}]}, ALL[:10]),
        ({"enabled": [{"operator": "=", "value": False}]}, ALL[2::3]),
        ({"enabled": [{"operator": "!=", "value": False}]}, [i for i in ALL if i not in ALL[2::3]]),
        ({"family": [{"operator": "IN", "value": ["hardware"]}]}, ALL[1::3]),
        ({"family": [{"operator": "NOT IN", "value": ["hardware", "software"]}]}, ALL[2::3]),
        (
            {
                "family": [{"operator": "IN", "value": ["software", "services"]}],
                "enabled": [{"operator": "=", "value": True}],
            },
            ALL[0::3],
        ),
    ],
)
def test_search_operators(seeded: Pim, filters: dict[str, Any], expected: list[str]) -> None:
    assert identifiers(seeded.client().get(PRODUCTS, params=search(**filters))) == expected


def test_since_last_n_days_counts_back_from_now(seeded: Pim) -> None:
    now = dt.datetime.now(dt.UTC)
    seed_records(
        seeded.store,
        "products",
        [
            product(100, updated=(now - dt.timedelta(hours=2)).isoformat()),
            product(101, updated=(now - dt.timedelta(days=3)).isoformat()),
        ],
    )
    client = seeded.client()
    one = {"updated": [{"operator": "SINCE LAST N DAYS", "value": 1}]}
    four = {"updated": [{"operator": "SINCE LAST N DAYS", "value": 4}]}
    assert identifiers(client.get(PRODUCTS, params=search(**one))) == ["P-100"]
    assert identifiers(client.get(PRODUCTS, params=search(**four))) == ["P-100", "P-101"]


def test_search_after_keeps_the_filter_across_pages(seeded: Pim) -> None:
    client = seeded.client()
    params: dict[str, str | int] = {
        "pagination_type": "search_after",
        "limit": 4,
        "search": json.dumps({"family": [{"operator": "IN", "value": ["software"]}]}),
    }
    body = client.get(PRODUCTS, params=params).json()
    got = [i["identifier"] for i in body["_embedded"]["items"]]
    while "next" in body["_links"]:
        body = client.get(body["_links"]["next"]["href"]).json()
        got += [i["identifier"] for i in body["_embedded"]["items"]]
    assert got == ALL[0::3]


@pytest.mark.parametrize(
    ("raw", "status", "message"),
    [
        ("{not json", 400, "Search query parameter should be valid JSON."),
        ('["updated"]', 422, "Search query parameter should be valid JSON."),
        (
            '{"updated": {"operator": ">", "value": "2024-01-01 00:00:00"}}',
            422,
            'Structure of filter "updated" should respect this structure: '
            '{"updated":[{"operator": "my_operator", "value": "my_value"}]}',
        ),
        (
            '{"updated": [{"operator": "AFTER", "value": "2024-01-01 00:00:00"}]}',
            422,
            'Filter on property "updated" is not supported or does not support operator "AFTER"',
        ),
        (
            '{"color": [{"operator": "=", "value": "red"}]}',
            422,
            'Filter on property "color" is not supported or does not support operator "="',
        ),
        (
            '{"updated": [{"operator": ">", "value": "2024-01-01T00:00:00Z"}]}',
            422,
            'Property "updated" expects a string with the format "yyyy-mm-dd H:i:s" as data, '
            '"2024-01-01T00:00:00Z" given.',
        ),
        (
            '{"enabled": [{"operator": "=", "value": "yes"}]}',
            422,
            'Property "enabled" expects a boolean as data, ""yes"" given.',
        ),
    ],
)
def test_bad_search_answers_akeneo_errors(seeded: Pim, raw: str, status: int, message: str) -> None:
    response = seeded.client().get(PRODUCTS, params={"search": raw})
    assert response.status_code == status
    assert response.json() == {"code": status, "message": message}


def test_get_one_product_and_404(seeded: Pim) -> None:
    client = seeded.client()
    one = client.get(f"{PRODUCTS}/P-004")
    assert one.status_code == 200
    assert one.json()["values"]["name"] == [{"locale": None, "scope": None, "data": "Product 4"}]
    assert "_links" not in one.json()
    missing = client.get(f"{PRODUCTS}/NOPE")
    assert missing.status_code == 404
    assert missing.json() == {"code": 404, "message": "Resource `NOPE` does not exist."}


def test_families_list_and_get(seeded: Pim) -> None:
    client = seeded.client()
    listing = client.get("/api/rest/v1/families", params={"limit": 2}).json()
    assert listing["current_page"] == 1
    assert len(listing["_embedded"]["items"]) == 2
    assert "next" in listing["_links"]
    all_codes = [
        f["code"]
        for f in client.get("/api/rest/v1/families", params={"limit": 100}).json()["_embedded"][
            "items"
        ]
    ]
    assert set(all_codes) >= {"software", "hardware", "services", "usage", "consumables"}
    hardware = client.get("/api/rest/v1/families/hardware").json()
    assert hardware["code"] == "hardware"
    assert hardware["attribute_as_label"] == "name"
    assert hardware["labels"] == {"en_US": "Hardware"}
    missing = client.get("/api/rest/v1/families/toys")
    assert missing.status_code == 404
    assert missing.json() == {"code": 404, "message": 'Family "toys" does not exist.'}
