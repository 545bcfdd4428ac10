"""The shared httpx client for REST connectors (PIM, WMS): timeouts, connection pooling,
TLS verification on by default with an optional CA bundle, and one translation of HTTP
failures into the connector error classes so retry decisions are made in one place."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import httpx
import requests

from connectors.errors import AuthError, PermanentError, TransientError
from connectors.redact import redact
from connectors.retry import parse_retry_after
from connectors.settings import CA_BUNDLE, TIMEOUT_VARIABLE, parse_timeout

RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


def timeout_from_env(env: Mapping[str, str], default: float) -> float:
    """The configured read timeout (``HUB_HTTP_TIMEOUT``), or ``default``; a bad value is
    a configuration error that names the variable rather than a silent fallback."""
    value = parse_timeout(env.get(TIMEOUT_VARIABLE, ""))
    return default if value is None else value


def tls_verify(ca_bundle: str | None = None) -> str | bool:
    """A CA bundle path when one is configured (HUB_CA_BUNDLE), else the system store.
    Verification is never switched off."""
    bundle = ca_bundle or os.environ.get(CA_BUNDLE)
    return bundle if bundle else True


class _PinnedTrustSession(requests.Session):
    timeout: float | tuple[float, float] | None = None

    """A requests session whose ``verify`` is not overridden by the environment.

    requests replaces a session's CA bundle with ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE``
    on every request that does not pass ``verify`` itself (psf/requests#3829), and the
    clients we hand sessions to (simple-salesforce, pyodata) never pass it: a configured
    HUB_CA_BUNDLE would be silently ignored wherever those variables are set."""

    def merge_environment_settings(
        self, url: Any, proxies: Any, stream: Any, verify: Any, cert: Any
    ) -> Any:
        merged = super().merge_environment_settings(url, proxies, stream, verify, cert)
        if verify is None and self.verify is not True:
            merged["verify"] = self.verify
        return merged

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> Any:
        # requests has no session-wide timeout and simple-salesforce and pyodata pass none:
        # without this a stalled server holds the sync as long as it stalls
        if kwargs.get("timeout") is None and self.timeout is not None:
            kwargs["timeout"] = self.timeout
        return super().request(method, url, *args, **kwargs)


def requests_session(
    ca_bundle: str | None = None, *, timeout: float | None = None, connect_timeout: float = 5.0
) -> requests.Session:
    """A requests session verifying TLS with HUB_CA_BUNDLE (or the system store) whose
    calls time out after ``timeout`` seconds of silence unless the caller says otherwise."""
    session = _PinnedTrustSession()
    session.verify = tls_verify(ca_bundle)
    if timeout is not None:
        session.timeout = (min(connect_timeout, timeout), timeout)
    return session


def make_client(
    base_url: str,
    *,
    ca_bundle: str | None = None,
    timeout: float = 30.0,
    connect_timeout: float = 5.0,
    max_connections: int = 10,
    headers: dict[str, str] | None = None,
) -> httpx.Client:
    return httpx.Client(
        base_url=base_url,
        verify=tls_verify(ca_bundle),
        timeout=httpx.Timeout(timeout, connect=connect_timeout),
        limits=httpx.Limits(
            max_connections=max_connections, max_keepalive_connections=max_connections
        ),
        headers=headers or {},
    )


def raise_for_status(system: str, response: httpx.Response) -> None:
    """Classify a non-2xx answer; the message keeps the system's own error text."""
    if response.is_success:
        return
    status = response.status_code
    body = redact(response.text[:500])
    where = f"{response.request.method} {response.request.url.path}"
    if status in RETRYABLE_STATUS:
        raise TransientError(
            system,
            f"{where} answered {status}: {body}",
            status=status,
            retry_after=parse_retry_after(response.headers.get("retry-after")),
        )
    if status in (401, 403):
        raise AuthError(system, f"{where} answered {status}: {body}", status=status)
    raise PermanentError(system, f"{where} answered {status}: {body}", status=status)


def transport_error(system: str, exc: httpx.TransportError) -> TransientError:
    """Timeouts, refused and dropped connections are all worth retrying."""
    return TransientError(system, f"{type(exc).__name__}: {redact(str(exc))}")
