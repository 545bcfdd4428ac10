"""No secret ever reaches a log line or an exception message: every connector of the
sandbox reads, writes, re-authenticates after token expiry, retries through 503s and is
refused with wrong credentials, with every logger captured at DEBUG (urllib3 and httpx
included); then the captured text and every exception's message and repr are scanned for
each password, client secret, API key, the JWT private key and the access tokens the
connectors were issued."""

import logging
from pathlib import Path
from typing import Any

import httpx
import pytest

from connectors import registry
from connectors.errors import ConnectorError
from connectors.retry import RetryPolicy
from sandbox.runner import running_sandbox

FAST = RetryPolicy(max_attempts=4, max_seconds=10, initial_wait=0.05, max_wait=0.5, jitter=0)
SECRET_VARS = (
    "SAP_PASSWORD",
    "SALESFORCE_CLIENT_SECRET",
    "PIM_SECRET",
    "PIM_PASSWORD",
    "WMS_API_KEY",
)
WRONG = {
    "sap": {"SAP_PASSWORD": "wrong-sap-Passw0rd-123"},
    "salesforce": {
        "SALESFORCE_CLIENT_SECRET": "wrong-sf-secret-9f8e7d",
        "SALESFORCE_PRIVATE_KEY_FILE": "",
    },
    "pim": {"PIM_PASSWORD": "wrong-pim-pass-4455"},
    "wms": {"WMS_API_KEY": "wms_wrong_key_77aa88bb"},
}
ENTITY = {"sap": "customer", "salesforce": "customer", "pim": "product", "wms": "allocation"}


def _fast(connector: Any) -> Any:
    settings = getattr(connector, "settings", None)
    if settings is not None and hasattr(settings, "retry"):
        settings.retry = FAST
    return connector


def _tokens(connector: Any) -> list[str]:
    """Access tokens a connector holds after talking to its system."""
    found = []
    sf = getattr(connector, "_sf", None)
    if sf is not None:
        found.append(sf.session_id)
    for name in ("_token", "token", "_access_token"):
        value = getattr(connector, name, None)
        if isinstance(value, str) and len(value) > 8:
            found.append(value)
    return found


def test_no_secret_in_logs_or_exceptions(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    messages: list[str] = []
    tokens: list[str] = []
    with (
        running_sandbox(tmp_path / "sb", seed=2, customers=8) as sb,
        caplog.at_level(logging.DEBUG),
    ):
        verify = sb.env.get("HUB_CA_BUNDLE") or True
        for system in ("sap", "salesforce", "pim", "wms"):
            connector = _fast(registry.build(system, sb.env))
            entity = ENTITY[system]
            records = [r for b in connector.read_changes(entity, None) for r in b.records]
            assert records, system
            admin = sb.admin_url(system) + "/faults"
            httpx.post(admin, json={"mode": "token_expiry"}, verify=verify).raise_for_status()
            httpx.post(admin, json={"mode": "503", "count": 1, "retry_after": 0}, verify=verify)
            connector.write_batch(entity, records[:2])  # re-authenticates, retries
            httpx.delete(admin, verify=verify)
            tokens += _tokens(connector)
            connector.close()

            refused = _fast(registry.build(system, {**sb.env, **WRONG[system]}))
            with pytest.raises(ConnectorError) as info:
                list(refused.read_changes(entity, None))
            messages += [str(info.value), repr(info.value)]
        key_file = sb.env["SALESFORCE_PRIVATE_KEY_FILE"]
        key_body = "".join(Path(key_file).read_text().splitlines()[1:-1])
        secrets = [sb.env[v] for v in SECRET_VARS] + [
            s for w in WRONG.values() for s in w.values() if s
        ]
    secrets += [key_body[i : i + 40] for i in range(0, len(key_body), 200)] + tokens
    text = caplog.text + "\n".join(messages)
    assert caplog.records, "the run logged nothing: the scan would prove nothing"
    assert tokens, "no access token captured to look for"
    leaked = [s[:6] + "..." for s in secrets if s and s in text]
    assert leaked == [], f"secrets in logs or exceptions: {leaked}"
