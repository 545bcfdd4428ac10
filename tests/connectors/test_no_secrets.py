"""No secret ever reaches a log line, an exception or a per-record error.

Every connector the sandbox configures (Salesforce, SAP when its connector builds, PIM,
WMS, billing) reads, writes through token expiry, 429, 503, 500, dropped connections and
per-record rejections, and is then refused with a wrong password / secret / API key /
JWT signing key. Every logger is captured at DEBUG (urllib3, httpx and httpcore, the
emulators' own, non-propagating ones too). Scanned: the captured log text, the message,
repr and formatted traceback (with its chained causes) of every exception, every
WriteResult error and Health detail. Looked for: each password, client secret and API
key, the wrong ones given, both JWT private keys' PEM bodies, the access and refresh
tokens the connectors held, and tokens fetched from the token endpoints here directly
(an emulator logging a bearer token would show them)."""

from __future__ import annotations

import contextlib
import logging
import traceback
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from connectors import registry
from connectors.base import Connector
from connectors.errors import ConnectorError
from connectors.retry import RetryPolicy
from hub.systems import connect
from sandbox.runner import SandboxHandle, running_sandbox

FAST = RetryPolicy(max_attempts=8, max_seconds=10, initial_wait=0.02, max_wait=0.2, jitter=0)
SECRET_VARS = (
    "SAP_PASSWORD",
    "SALESFORCE_CLIENT_SECRET",
    "PIM_SECRET",
    "PIM_PASSWORD",
    "WMS_API_KEY",
)
WRONG = {
    "sap": [{"SAP_PASSWORD": "wrong-sap-Passw0rd-123"}],
    "salesforce": [
        {"SALESFORCE_CLIENT_SECRET": "wrong-sf-secret-9f8e7d", "SALESFORCE_PRIVATE_KEY_FILE": ""}
    ],
    "pim": [{"PIM_PASSWORD": "wrong-pim-pass-4455"}, {"PIM_SECRET": "wrong-pim-client-sec-77"}],
    "wms": [{"WMS_API_KEY": "wms_wrong_key_77aa88bb"}],
}
ENTITY = {
    "sap": "customer",
    "salesforce": "customer",
    "pim": "product",
    "wms": "allocation",
    "billing": "customer",
}
FAULTED = ("sap", "salesforce", "pim", "wms")  # the systems with an emulator


@contextlib.contextmanager
def every_logger_at_debug(handler: logging.Handler) -> Iterator[None]:
    """DEBUG on every logger that exists (uvicorn and others set their own levels), and
    the capture handler on those that do not propagate to the root."""
    saved: list[tuple[logging.Logger, int, bool]] = []
    for logger in [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]:
        if not isinstance(logger, logging.Logger):
            continue
        attach = not logger.propagate and handler not in logger.handlers
        saved.append((logger, logger.level, attach))
        logger.setLevel(logging.DEBUG)
        if attach:
            logger.addHandler(handler)
    handler.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        for logger, level, attached in saved:
            logger.setLevel(level)
            if attached:
                logger.removeHandler(handler)


def _fast(connector: Connector) -> Connector:
    settings = getattr(connector, "settings", None)
    if settings is not None and hasattr(settings, "retry"):
        settings.retry = FAST
    if settings is not None and hasattr(settings, "bulk_poll_initial"):
        settings.bulk_poll_initial = 0.01
    return connector


def held_tokens(connector: Any) -> list[str]:
    """Bearer tokens a connector holds: Authorization headers of every requests/httpx
    client reachable from it, Salesforce's session id, and token-like attributes."""
    found: list[str] = []
    objects: list[Any] = [connector, *vars(connector).values()]
    for obj in objects:
        headers = getattr(obj, "headers", None)
        if isinstance(obj, requests.Session | httpx.Client) and headers is not None:
            auth = headers.get("Authorization") or headers.get("authorization")
            if auth:
                found.append(str(auth).split(" ", 1)[-1])
        session_id = getattr(obj, "session_id", None)
        if isinstance(session_id, str):
            found.append(session_id)
    for name, value in vars(connector).items():
        if ("token" in name or "refresh" in name or "key" in name) and isinstance(value, str):
            found.append(value)
    return [t for t in found if len(t) >= 12]


def mint_tokens(env: Mapping[str, str]) -> dict[str, str]:
    """Tokens fetched from the token endpoints directly, as any client would, by name."""
    verify: Any = env.get("HUB_CA_BUNDLE") or True
    out: dict[str, str] = {}
    if env.get("SALESFORCE_LOGIN_URL"):
        answer = httpx.post(
            env["SALESFORCE_LOGIN_URL"].rstrip("/") + "/services/oauth2/token",
            data={
                "grant_type": "client_credentials",
                "client_id": env["SALESFORCE_CLIENT_ID"],
                "client_secret": env["SALESFORCE_CLIENT_SECRET"],
            },
            verify=verify,
        )
        answer.raise_for_status()
        out["Salesforce access_token"] = answer.json()["access_token"]
    if env.get("PIM_URL"):
        answer = httpx.post(
            env["PIM_URL"].rstrip("/") + "/api/oauth/v1/token",
            json={
                "grant_type": "password",
                "username": env["PIM_USERNAME"],
                "password": env["PIM_PASSWORD"],
            },
            auth=(env["PIM_CLIENT_ID"], env["PIM_SECRET"]),
            verify=verify,
        )
        answer.raise_for_status()
        out["PIM access_token"] = answer.json()["access_token"]
        out["PIM refresh_token"] = answer.json()["refresh_token"]
    return out


def describe(exc: BaseException) -> list[str]:
    """Message, repr and the formatted traceback of an exception and its causes."""
    out: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        out += [str(current), repr(current)]
        current = current.__cause__ or current.__context__
    out.append("".join(traceback.format_exception(exc)))
    return out


def pem_body(path: Path) -> str:
    return "".join(path.read_text().splitlines()[1:-1])


def wrong_signing_key(folder: Path) -> Path:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = folder / "not-the-connected-app-key.pem"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path


def fault(sb: SandboxHandle, system: str, **spec: Any) -> None:
    verify: Any = sb.env.get("HUB_CA_BUNDLE") or True
    url = sb.admin_url(system) + "/faults"
    httpx.post(url, json=spec, verify=verify).raise_for_status()


def clear(sb: SandboxHandle, system: str) -> None:
    verify: Any = sb.env.get("HUB_CA_BUNDLE") or True
    httpx.delete(sb.admin_url(system) + "/faults", verify=verify).raise_for_status()


def test_no_secret_in_logs_exceptions_or_results(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    texts: list[str] = []  # exceptions, per-record errors, health details
    tokens: dict[str, list[str]] = {}
    exercised: list[str] = []
    bad_key = wrong_signing_key(tmp_path)
    with (
        running_sandbox(tmp_path / "sb", seed=2, customers=8) as sb,
        every_logger_at_debug(caplog.handler),
    ):
        minted = list(mint_tokens(sb.env).values())
        wrong = {**WRONG, "salesforce": [*WRONG["salesforce"], {}]}
        wrong["salesforce"][-1] = {"SALESFORCE_PRIVATE_KEY_FILE": str(bad_key)}
        for system in registry.configured_systems(sb.env):
            try:
                connector = _fast(connect(system, sb.env))
            except (ImportError, AttributeError, ValueError) as exc:
                texts.append(f"{system} not built: {exc}")  # SAP before its connector exists
                continue
            exercised.append(system)
            entity = ENTITY[system]
            records = [r for b in connector.read_changes(entity, None) for r in b.records]
            assert records, system
            tokens.setdefault(system, []).extend(held_tokens(connector))
            if system in FAULTED:
                fault(sb, system, mode="token_expiry")
                for mode in ("429", "503", "500", "drop"):
                    fault(sb, system, mode=mode, count=1, retry_after=0)
            try:
                results = connector.write_batch(entity, records[:3])
                texts += [f"{r.error} {r.error_code}" for r in results]
            except ConnectorError as exc:
                texts += describe(exc)
            tokens[system].extend(held_tokens(connector))
            if system in FAULTED:
                clear(sb, system)
                fault(sb, system, mode="reject", rate=1.0)
                with contextlib.suppress(ConnectorError):
                    results = connector.write_batch(entity, records[:2])
                    texts += [f"{r.error} {r.error_code}" for r in results]
                clear(sb, system)
            texts.append(connector.health().detail)
            connector.close()

            for change in wrong.get(system, []):
                refused = _fast(connect(system, {**sb.env, **change}))
                with pytest.raises(ConnectorError) as info:
                    list(refused.read_changes(entity, None))
                texts += describe(info.value)
                texts.append(refused.health().detail)
                refused.close()

        key_file = Path(sb.env["SALESFORCE_PRIVATE_KEY_FILE"])
        secrets = [sb.env[v] for v in SECRET_VARS if sb.env.get(v)]
        secrets += [v for changes in wrong.values() for c in changes for v in c.values() if v]
        secrets.remove(str(bad_key))  # a path, not a secret; its contents are below
        for body in (pem_body(key_file), pem_body(bad_key)):
            secrets += [body[i : i + 40] for i in range(0, len(body), 120)]
        secrets += minted + [t for held in tokens.values() for t in held]

    assert {"salesforce", "pim", "wms"} <= set(exercised)
    assert tokens["salesforce"] and tokens["pim"] and tokens["wms"], tokens.keys()
    loggers = {r.name.split(".")[0] for r in caplog.records}
    assert {"urllib3", "httpx", "hub"} <= loggers, loggers  # the capture saw the clients
    assert any(r.levelno == logging.DEBUG for r in caplog.records)
    text = caplog.text + "\n".join(texts)
    leaked = sorted({s[:6] + "..." for s in secrets if s and s in text})
    assert leaked == [], f"secrets in logs, exceptions or results: {leaked}"
