"""PATCH one product and PATCH a collection: creation, update, merge rules, the
``updated`` stamp, and Akeneo's validation answers."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from tests.sandbox.pim.conftest import COLLECTION, Pim

pytestmark = pytest.mark.timeout(60)
PRODUCTS = "/api/rest/v1/products"
DOC = {"documentation": {"href": "http://api.akeneo.com/api-reference.html#Product"}}


def _value(data: Any) -> list[dict[str, Any]]:
    return [{"locale": None, "scope": None, "data": data}]


def _lines(response: Any) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith(COLLECTION)
    return [json.loads(line) for line in response.text.splitlines()]


def test_patch_creates_then_updates_and_keeps_updated_when_nothing_changes(pim: Pim) -> None:
    client = pim.client()
    body = {"identifier": "SKU-1", "family": "hardware", "values": {"name": _value("Scanner")}}
    created = client.patch(f"{PRODUCTS}/SKU-1", json=body)
    assert created.status_code == 201
    assert created.headers["location"].endswith("/api/rest/v1/products/SKU-1")
    assert created.content == b""
    first = client.get(f"{PRODUCTS}/SKU-1").json()
    assert first["enabled"] is True  # Akeneo's default
    assert first["created"] == first["updated"]
    assert first["updated"].endswith("+00:00") and "." not in first["updated"]
    time.sleep(1.05)  # Akeneo stamps whole seconds
    same = client.patch(f"{PRODUCTS}/SKU-1", json=body)
    assert same.status_code == 204
    assert client.get(f"{PRODUCTS}/SKU-1").json()["updated"] == first["updated"]
    changed = client.patch(f"{PRODUCTS}/SKU-1", json={"enabled": False})
    assert changed.status_code == 204
    second = client.get(f"{PRODUCTS}/SKU-1").json()
    assert second["enabled"] is False
    assert second["updated"] > first["updated"]
    assert second["created"] == first["created"]


def test_patch_merges_values_and_replaces_lists(pim: Pim) -> None:
    client = pim.client()
    client.patch(
        f"{PRODUCTS}/SKU-2",
        json={
            "categories": ["a", "b"],
            "values": {"name": _value("Old"), "unit": _value("EA")},
        },
    )
    client.patch(
        f"{PRODUCTS}/SKU-2",
        json={"categories": ["c"], "values": {"name": _value("New"), "description": _value("d")}},
    )
    stored = client.get(f"{PRODUCTS}/SKU-2").json()
    assert stored["categories"] == ["c"]
    assert stored["values"] == {
        "name": _value("New"),
        "unit": _value("EA"),
        "description": _value("d"),
    }
    client.patch(f"{PRODUCTS}/SKU-2", json={"values": {"description": _value(None)}})
    assert "description" not in client.get(f"{PRODUCTS}/SKU-2").json()["values"]


def test_read_only_properties_are_ignored(pim: Pim) -> None:
    client = pim.client()
    response = client.patch(
        f"{PRODUCTS}/SKU-3", json={"created": "2000-01-01T00:00:00+00:00", "updated": "x"}
    )
    assert response.status_code == 201
    assert client.get(f"{PRODUCTS}/SKU-3").json()["created"] > "2020"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            {"family": "toys"},
            {
                "code": 422,
                "message": 'Property "family" expects a valid family code. The family does '
                'not exist, "toys" given. Check the expected format on the API documentation.',
                "_links": DOC,
            },
        ),
        (
            {"colour": "red"},
            {
                "code": 422,
                "message": 'Property "colour" does not exist. Check the expected format on the '
                "API documentation.",
                "_links": DOC,
            },
        ),
        (
            {"enabled": "yes"},
            {
                "code": 422,
                "message": 'Property "enabled" expects a boolean as data, "str" given. Check '
                "the expected format on the API documentation.",
                "_links": DOC,
            },
        ),
        (
            {"values": {"name": "Scanner"}},
            {
                "code": 422,
                "message": 'Property "name" expects an array of values with the keys "locale", '
                '"scope" and "data". Check the expected format on the API documentation.',
                "_links": DOC,
            },
        ),
        (
            {"values": {"weight": _value("3")}},
            {
                "code": 422,
                "message": 'Attribute "weight" does not exist. Check the expected format on '
                "the API documentation.",
                "_links": DOC,
            },
        ),
        (
            {
                "values": {
                    "lifecycle": _value("sunset"),
                    "name": [{"locale": "en_US", "scope": None, "data": "x" * 256}],
                }
            },
            {
                "code": 422,
                "message": "Validation failed.",
                "errors": [
                    {
                        "property": "values",
                        "message": "The sunset value is not in the lifecycle attribute option "
                        "list.",
                        "attribute": "lifecycle",
                        "locale": None,
                        "scope": None,
                    },
                    {
                        "property": "values",
                        "message": 'The name attribute does not require a locale, "en_US" was '
                        "detected.",
                        "attribute": "name",
                        "locale": "en_US",
                        "scope": None,
                    },
                    {
                        "property": "values",
                        "message": "This value is too long. It should have 255 characters or less.",
                        "attribute": "name",
                        "locale": "en_US",
                        "scope": None,
                    },
                ],
            },
        ),
        (
            {"identifier": "OTHER"},
            {
                "code": 422,
                "message": 'The identifier "OTHER" provided in the request body must match the '
                'identifier "SKU-9" provided in the url.',
            },
        ),
    ],
)
def test_validation_errors_answer_akeneo_422(
    pim: Pim, body: dict[str, Any], expected: dict[str, Any]
) -> None:
    client = pim.client()
    response = client.patch(f"{PRODUCTS}/SKU-9", json=body)
    assert response.status_code == 422
    assert response.json() == expected
    assert client.get(f"{PRODUCTS}/SKU-9").status_code == 404  # nothing was saved


def test_identifier_format_is_validated(pim: Pim) -> None:
    response = pim.client().patch(f"{PRODUCTS}/A,B", json={})
    assert response.status_code == 422
    assert response.json()["errors"] == [
        {
            "property": "identifier",
            "message": "This field should not contain any comma or semicolon or line breaks.",
        }
    ]


def test_patch_needs_json_content_type_and_valid_json(pim: Pim) -> None:
    client = pim.client()
    wrong = client.patch(f"{PRODUCTS}/SKU-4", content=b"{}", headers={"Content-Type": "text/plain"})
    assert wrong.status_code == 415
    assert wrong.json()["code"] == 415
    broken = client.patch(
        f"{PRODUCTS}/SKU-4", content=b"{", headers={"Content-Type": "application/json"}
    )
    assert broken.status_code == 400
    assert broken.json() == {"code": 400, "message": "Invalid json message received"}


def test_collection_patch_answers_line_by_line(pim: Pim) -> None:
    client = pim.client()
    client.patch(f"{PRODUCTS}/EXISTING", json={"family": "software"})
    body = "\n".join(
        [
            json.dumps({"identifier": "NEW-1", "family": "hardware"}),
            json.dumps({"identifier": "EXISTING", "enabled": False}),
            json.dumps({"identifier": "BAD-1", "family": "toys"}),
            "{not json",
            json.dumps({"family": "software"}),
            json.dumps({"identifier": "BAD-2", "values": {"lifecycle": _value("gone")}}),
        ]
    )
    response = client.patch(PRODUCTS, content=body, headers={"Content-Type": COLLECTION})
    lines = _lines(response)
    assert lines[0] == {"line": 1, "identifier": "NEW-1", "status_code": 201}
    assert lines[1] == {"line": 2, "identifier": "EXISTING", "status_code": 204}
    assert lines[2]["status_code"] == 422
    assert lines[2]["identifier"] == "BAD-1"
    assert "The family does not exist" in lines[2]["message"]
    assert lines[3] == {"line": 4, "status_code": 400, "message": "Invalid json message received"}
    assert lines[4] == {"line": 5, "status_code": 422, "message": "Identifier is missing."}
    assert lines[5]["message"] == "Validation failed."
    assert lines[5]["errors"][0]["attribute"] == "lifecycle"
    assert client.get(f"{PRODUCTS}/EXISTING").json()["enabled"] is False
    assert client.get(f"{PRODUCTS}/BAD-1").status_code == 404


def test_collection_patch_limits_and_content_type(pim: Pim) -> None:
    client = pim.client()
    hundred = "\n".join(json.dumps({"identifier": f"C-{i:03d}"}) for i in range(100))
    ok = _lines(client.patch(PRODUCTS, content=hundred, headers={"Content-Type": COLLECTION}))
    assert [line["status_code"] for line in ok] == [201] * 100
    too_many = hundred + "\n" + json.dumps({"identifier": "C-100"})
    refused = client.patch(PRODUCTS, content=too_many, headers={"Content-Type": COLLECTION})
    assert refused.status_code == 413
    assert refused.json() == {
        "code": 413,
        "message": "Too many resources to process, 100 is the maximum allowed.",
    }
    assert client.get(f"{PRODUCTS}/C-100").status_code == 404
    as_json = client.patch(PRODUCTS, json={"identifier": "X"})
    assert as_json.status_code == 415


def test_post_creates_and_refuses_an_identifier_already_taken(pim: Pim) -> None:
    client = pim.client()
    body = {"identifier": "SKU-NEW", "family": "hardware", "values": {"name": _value("Dock")}}
    created = client.post(PRODUCTS, json=body)
    assert created.status_code == 201, created.text
    assert created.headers["location"].endswith("/api/rest/v1/products/SKU-NEW")
    assert client.get(f"{PRODUCTS}/SKU-NEW").json()["values"]["name"][0]["data"] == "Dock"
    again = client.post(PRODUCTS, json={**body, "values": {"name": _value("Other")}})
    assert again.status_code == 422
    [error] = again.json()["errors"]
    assert error["property"] == "identifier" and "already set" in error["message"]
    # the product is not touched by the refused create
    assert client.get(f"{PRODUCTS}/SKU-NEW").json()["values"]["name"][0]["data"] == "Dock"
    blank = client.post(PRODUCTS, json={"family": "hardware"})
    assert blank.status_code == 422 and blank.json()["errors"][0]["property"] == "identifier"


def test_delete_removes_the_product_for_good(pim: Pim) -> None:
    client = pim.client()
    assert client.patch(f"{PRODUCTS}/SKU-GONE", json={"identifier": "SKU-GONE"}).status_code == 201
    assert client.delete(f"{PRODUCTS}/SKU-GONE").status_code == 204
    assert client.get(f"{PRODUCTS}/SKU-GONE").status_code == 404
    listed = client.get(PRODUCTS, params={"limit": 100}).json()["_embedded"]["items"]
    assert "SKU-GONE" not in {p["identifier"] for p in listed}
    missing = client.delete(f"{PRODUCTS}/SKU-GONE")
    assert missing.status_code == 404
    assert missing.json() == {"code": 404, "message": "Resource `SKU-GONE` does not exist."}
    # a token is needed, as for every other product call
    assert pim.http().delete(f"{PRODUCTS}/SKU-X").status_code == 401
