"""Org settings of the Salesforce emulator that change what the API answers: the oldest
API version served (older ones are retired: 410 GONE), multi-currency, and State and
Country/Territory Picklists."""

from __future__ import annotations

from collections.abc import Callable

from tests.sandbox.salesforce.conftest import Org


def test_a_retired_version_answers_410_gone_a_future_one_404(
    org_factory: Callable[..., Org],
) -> None:
    org = org_factory(min_api_version="40.0", api_version="62.0")
    token = org.token()
    auth = {"Authorization": f"Bearer {token}"}
    with org.http() as http:
        for version in ("39.0", "30.0", "20.0"):
            resp = http.get(f"/services/data/v{version}/limits", headers=auth)
            assert resp.status_code == 410, version
            (error,) = resp.json()
            assert error["errorCode"] == "UNSUPPORTED_API_VERSION"
            assert version in error["message"]
        assert http.get("/services/data/v40.0/limits", headers=auth).status_code == 200
        missing = http.get("/services/data/v63.0/limits", headers=auth)
        assert missing.status_code == 404
        assert missing.json()[0]["errorCode"] == "NOT_FOUND"
        listed = [v["version"] for v in http.get("/services/data/").json()]
    assert listed[0] == "40.0" and listed[-1] == "62.0"
