"""OAuth as Akeneo runs it: password and refresh grants, and the 422/400/401 answers."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable

import httpx
import pytest

from tests.sandbox.pim.conftest import CLIENT_ID, PASSWORD, SECRET, USERNAME, Pim

pytestmark = pytest.mark.timeout(60)
TOKEN = "/api/oauth/v1/token"


def test_password_grant_answers_akeneo_token_and_opens_the_api(pim: Pim) -> None:
    response = pim.token()
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"access_token", "expires_in", "token_type", "scope", "refresh_token"}
    assert body["expires_in"] == 3600
    assert body["token_type"] == "bearer"
    assert body["scope"] is None
    headers = {"Authorization": f"Bearer {body['access_token']}"}
    assert pim.http().get("/api/rest/v1/products", headers=headers).status_code == 200


def test_refresh_grant_issues_new_tokens_and_is_single_use(pim: Pim) -> None:
    first = pim.token().json()
    refreshed = pim.token(grant_type="refresh_token", refresh_token=first["refresh_token"])
    assert refreshed.status_code == 200
    second = refreshed.json()
    assert second["access_token"] != first["access_token"]
    assert second["refresh_token"] != first["refresh_token"]
    headers = {"Authorization": f"Bearer {second['access_token']}"}
    assert pim.http().get("/api/rest/v1/products", headers=headers).status_code == 200
    again = pim.token(grant_type="refresh_token", refresh_token=first["refresh_token"])
    assert again.status_code == 422
    assert again.json() == {"code": 422, "message": "Refresh token is invalid or has expired"}


def test_form_encoded_token_request_is_accepted(pim: Pim) -> None:
    basic = base64.b64encode(f"{CLIENT_ID}:{SECRET}".encode()).decode()
    response = pim.http().post(
        TOKEN,
        headers={"Authorization": f"Basic {basic}"},
        data={"grant_type": "password", "username": USERNAME, "password": PASSWORD},
    )
    assert response.status_code == 200
    assert response.json()["token_type"] == "bearer"


@pytest.mark.parametrize(
    ("auth", "body", "status", "message"),
    [
        (
            (CLIENT_ID, "wrong"),
            {"grant_type": "password", "username": USERNAME, "password": PASSWORD},
            422,
            'Parameter "client_id" is missing or does not match any client, or secret is invalid',
        ),
        (
            None,
            {"grant_type": "password", "username": USERNAME, "password": PASSWORD},
            422,
            'Parameter "client_id" is missing or does not match any client, or secret is invalid',
        ),
        (
            (CLIENT_ID, SECRET),
            {"grant_type": "password", "username": USERNAME, "password": "nope"},
            422,
            "No user found for the given username and password",
        ),
        (
            (CLIENT_ID, SECRET),
            {"grant_type": "client_credentials"},
            422,
            'Parameter "grant_type" is missing, empty or invalid',
        ),
        (
            (CLIENT_ID, SECRET),
            {"grant_type": "refresh_token", "refresh_token": "made-up"},
            422,
            "Refresh token is invalid or has expired",
        ),
    ],
)
def test_bad_credentials_answer_422(
    pim: Pim, auth: tuple[str, str] | None, body: dict[str, str], status: int, message: str
) -> None:
    http = pim.http()
    response = (
        http.post(TOKEN, json=body) if auth is None else http.post(TOKEN, auth=auth, json=body)
    )
    assert response.status_code == status
    assert response.json() == {"code": status, "message": message}


def test_malformed_json_answers_400(pim: Pim) -> None:
    response = pim.http().post(
        TOKEN,
        auth=(CLIENT_ID, SECRET),
        content=b'{"grant_type": "password",',
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json() == {"code": 400, "message": "Invalid json message received"}


def test_api_calls_without_or_with_a_bad_token_answer_401(pim: Pim) -> None:
    http = pim.http()
    missing = http.get("/api/rest/v1/products")
    assert missing.status_code == 401
    assert missing.json() == {"code": 401, "message": "Authentication is required"}
    basic = http.get("/api/rest/v1/products", auth=(CLIENT_ID, SECRET))
    assert basic.status_code == 401
    bad = http.get("/api/rest/v1/products", headers={"Authorization": "Bearer nope"})
    assert bad.status_code == 401
    assert bad.json() == {"code": 401, "message": "The access token provided is invalid."}
    # the API root and the token route need no token, as on Akeneo
    root = http.get("/api/rest/v1")
    assert root.status_code == 200
    assert "pim_api_product_list" in root.json()["routes"]


def test_tokens_expire_after_their_lifetime(pim_factory: Callable[..., Pim]) -> None:
    pim = pim_factory(token_ttl_seconds=1)
    client = pim.client()
    assert client.get("/api/rest/v1/products").status_code == 200
    time.sleep(1.2)
    expired = client.get("/api/rest/v1/products")
    assert expired.status_code == 401
    assert expired.json() == {"code": 401, "message": "The access token provided has expired."}
    assert pim.token().json()["expires_in"] == 1


def test_secret_never_echoed(pim: Pim) -> None:
    response = httpx.post(
        f"{pim.base}{TOKEN}",
        auth=(CLIENT_ID, SECRET),
        json={"grant_type": "password", "username": USERNAME, "password": "wrong-guess"},
    )
    assert "wrong-guess" not in response.text and SECRET not in response.text
