"""OAuth 2.0 grants, sessions, the daily API budget and every fault mode, seen through
httpx (token endpoint) and simple-salesforce (API)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from simple_salesforce.exceptions import (
    SalesforceExpiredSession,
    SalesforceGeneralError,
    SalesforceMalformedRequest,
    SalesforceRefusedRequest,
    SalesforceResourceNotFound,
)

from tests.sandbox.salesforce.conftest import Org, bulk2, error_body, rest, seed_accounts, sobject

pytestmark = pytest.mark.timeout(60)
TOKEN = "/services/oauth2/token"
JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"


@pytest.fixture(scope="module")
def key_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, Path]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public = tmp_path_factory.mktemp("jwt") / "pub.pem"
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return private, public


@pytest.fixture
def jwt_org(org_factory: Callable[..., Org], key_pair: tuple[bytes, Path]) -> Org:
    return org_factory(public_key_file=str(key_pair[1]))


def _assertion(org: Org, private: bytes, **overrides: Any) -> str:
    claims = {
        "iss": org.settings.client_id,
        "sub": org.settings.username,
        "aud": org.base,
        "exp": int(time.time()) + 170,
        **overrides,
    }
    return jwt.encode(claims, private, algorithm="RS256")


def test_client_credentials_grant_in_form_or_basic_auth(org: Org) -> None:
    with org.http() as client:
        form = client.post(
            TOKEN,
            data={
                "grant_type": "client_credentials",
                "client_id": org.settings.client_id,
                "client_secret": org.settings.client_secret,
            },
        )
        basic = client.post(
            TOKEN,
            data={"grant_type": "client_credentials"},
            auth=(org.settings.client_id, org.settings.client_secret),
        )
        wrong = client.post(
            TOKEN,
            data={"grant_type": "client_credentials"},
            auth=(org.settings.client_id, "nope"),
        )
        unknown = client.post(TOKEN, data={"grant_type": "password"})
    for resp in (form, basic):
        body = resp.json()
        assert resp.status_code == 200
        assert set(body) == {
            "access_token",
            "instance_url",
            "id",
            "token_type",
            "issued_at",
            "signature",
            "scope",
        }
        assert body["token_type"] == "Bearer" and body["instance_url"] == org.base
        assert body["access_token"].startswith(org.settings.org_id[:15] + "!")
    assert (wrong.status_code, wrong.json()["error"]) == (400, "invalid_client")
    assert unknown.json() == {
        "error": "unsupported_grant_type",
        "error_description": "grant type not supported",
    }
    sf = org.client(form.json()["access_token"])
    assert sf.limits()["DailyApiRequests"]["Max"] == org.settings.daily_api_limit


def test_jwt_bearer_grant(jwt_org: Org, key_pair: tuple[bytes, Path]) -> None:
    private, _ = key_pair
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    foreign = other.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )

    def grant(assertion: str) -> Any:
        with jwt_org.http() as client:
            return client.post(TOKEN, data={"grant_type": JWT_GRANT, "assertion": assertion})

    ok = grant(_assertion(jwt_org, private))
    assert ok.status_code == 200, ok.text
    login = grant(_assertion(jwt_org, private, aud="https://login.salesforce.com"))
    assert login.status_code == 200
    sf = jwt_org.client(ok.json()["access_token"])
    assert sf.query("SELECT COUNT() FROM Account")["totalSize"] == 0
    cases = {
        "audience is invalid": _assertion(jwt_org, private, aud="https://evil.example"),
        "expired assertion": _assertion(jwt_org, private, exp=int(time.time()) - 60),
        "expiration time is too far in the future": _assertion(
            jwt_org, private, exp=int(time.time()) + 3600
        ),
        "invalid assertion": _assertion(jwt_org, foreign),
        "user hasn't approved this consumer": _assertion(jwt_org, private, sub="who@else"),
    }
    for description, assertion in cases.items():
        resp = grant(assertion)
        assert resp.status_code == 400
        assert resp.json() == {"error": "invalid_grant", "error_description": description}
    wrong_app = grant(_assertion(jwt_org, private, iss="3MVGsomebodyElse"))
    assert wrong_app.json()["error"] == "invalid_client_id"


def test_jwt_disabled_without_certificate(org: Org, key_pair: tuple[bytes, Path]) -> None:
    with org.http() as client:
        resp = client.post(
            TOKEN, data={"grant_type": JWT_GRANT, "assertion": _assertion(org, key_pair[0])}
        )
    assert resp.status_code == 400 and resp.json()["error"] == "invalid_grant"


def test_invalid_session_for_missing_forged_expired_tokens(org_factory: Callable[..., Org]) -> None:
    org = org_factory(token_ttl_seconds=1)
    token = org.token()
    with org.http() as client:
        missing = client.get("/services/data/v62.0/query", params={"q": "SELECT Id FROM Account"})
    assert missing.status_code == 401
    assert missing.json() == [
        {"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}
    ]
    with pytest.raises(SalesforceExpiredSession):
        org.client(token[:-2] + "xx").query("SELECT Id FROM Account")
    sf = org.client(token)
    assert sf.query("SELECT COUNT() FROM Account")["totalSize"] == 0
    time.sleep(1.1)
    with pytest.raises(SalesforceExpiredSession):
        sf.query("SELECT COUNT() FROM Account")


def test_token_expiry_fault_invalidates_earlier_tokens(org: Org) -> None:
    old = org.token()
    org.fault(mode="token_expiry")
    with pytest.raises(SalesforceExpiredSession) as info:
        org.client(old).query("SELECT Id FROM Account")
    assert error_body(info.value)[0]["errorCode"] == "INVALID_SESSION_ID"
    fresh = org.client()  # a token minted after the bump works
    assert fresh.query("SELECT COUNT() FROM Account")["totalSize"] == 0


def test_daily_api_limit_and_limit_info_header(org_factory: Callable[..., Org]) -> None:
    org = org_factory(daily_api_limit=3)
    sf = org.client()
    sf.query("SELECT COUNT() FROM Account")
    assert (sf.api_usage["api-usage"].used, sf.api_usage["api-usage"].total) == (1, 3)
    limits = sf.limits()
    assert limits["DailyApiRequests"] == {"Max": 3, "Remaining": 1}
    sf.query("SELECT COUNT() FROM Account")
    with pytest.raises(SalesforceRefusedRequest) as info:
        sf.query("SELECT COUNT() FROM Account")
    assert error_body(info.value) == [
        {"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}
    ]


def test_versions_and_resources(org: Org) -> None:
    with org.http() as client:
        listed = client.get("/services/data/").json()
    assert listed[-1] == {"label": "Winter '25", "url": "/services/data/v62.0", "version": "62.0"}
    assert {"label": "Spring '24", "url": "/services/data/v60.0", "version": "60.0"} in listed
    sf = org.client()
    assert rest(sf, "")["query"] == "/services/data/v62.0/query"
    with pytest.raises(SalesforceResourceNotFound) as info:
        org.client(version="63.0").query("SELECT Id FROM Account")
    assert error_body(info.value)[0]["errorCode"] == "NOT_FOUND"


@pytest.mark.parametrize(
    ("mode", "status", "code"),
    [
        ("429", 429, "REQUEST_LIMIT_EXCEEDED"),
        ("500", 500, "UNKNOWN_EXCEPTION"),
        ("503", 503, "SERVER_UNAVAILABLE"),
    ],
)
def test_status_faults_answer_salesforce_bodies(
    org: Org, mode: str, status: int, code: str
) -> None:
    sf = org.client()
    org.fault(mode=mode, count=1, retry_after=7, path="/services/data/")
    with pytest.raises(SalesforceGeneralError) as info:
        sf.query("SELECT Id FROM Account")
    assert info.value.status == status
    assert error_body(info.value)[0]["errorCode"] == code
    # the fault cleared itself after one hit (count=1)
    assert sf.query("SELECT COUNT() FROM Account")["totalSize"] == 0
    if status in (429, 503):
        org.fault(mode=mode, count=1, retry_after=7)
        resp = org.session().get(
            f"{org.base}/services/data/v62.0/limits",
            headers={"Authorization": f"Bearer {sf.session_id}"},
        )
        assert resp.status_code == status
        assert resp.headers["Retry-After"] == "7"


def test_latency_and_dropped_connections(org: Org) -> None:
    sf = org.client()
    org.fault(mode="latency", latency_ms=300, count=1, path="/query")
    started = time.monotonic()
    assert sf.query("SELECT COUNT() FROM Account")["totalSize"] == 0
    assert time.monotonic() - started >= 0.3
    seed_accounts(org.store, 50)
    org.fault(mode="drop", count=1, path="/query")
    with pytest.raises(requests.exceptions.RequestException):
        sf.query("SELECT Id, Name FROM Account")
    assert len(sf.query("SELECT Id, Name FROM Account")["records"]) == 50


def test_reject_fault_fails_the_same_records_everywhere(org: Org) -> None:
    sf = org.client()
    org.fault(mode="reject", rate=0.5)
    records = [
        {"attributes": {"type": "Account"}, "Name": f"Co {i}", "Hub_Id__c": f"CUS-{i:07d}"}
        for i in range(40)
    ]
    answer = rest(sf, "composite/sobjects", "POST", json={"records": records})
    rejected = [r for r in records if not answer[records.index(r)]["success"]]
    assert 5 < len(rejected) < 35
    error = answer[records.index(rejected[0])]["errors"][0]
    assert error["statusCode"] == "FIELD_CUSTOM_VALIDATION_EXCEPTION"
    assert "Hub_Sandbox_Check" in error["message"]
    with pytest.raises(SalesforceMalformedRequest) as info:
        sobject(sf, "Account").upsert(f"Hub_Id__c/{rejected[0]['Hub_Id__c']}", {"Name": "Again"})
    assert error_body(info.value)[0]["errorCode"] == "FIELD_CUSTOM_VALIDATION_EXCEPTION"
    [bulk] = bulk2(sf, "Account").upsert(
        records=[{"Hub_Id__c": str(r["Hub_Id__c"]), "Name": "Bulk"} for r in records],
        external_id_field="Hub_Id__c",
        wait=0,
    )
    assert bulk["numberRecordsFailed"] == len(rejected)
    org.clear_faults()
    again = rest(sf, "composite/sobjects", "POST", json={"records": rejected})
    assert all(r["success"] for r in again)
