"""OAuth 2.0 token endpoint, session checks and the daily API budget.

Access tokens are self-contained and HMAC-signed with a secret kept in the store, so
they survive an emulator restart the way Salesforce sessions survive a pod restart, and
need no session table. A token carries when it was issued and the fault state's
``token_epoch`` at that moment: it is refused (``INVALID_SESSION_ID``) once older than
``token_ttl_seconds`` or once the ``token_expiry`` fault has bumped the epoch - which is
how the hub's re-authentication path gets exercised.

Grants: ``client_credentials`` (client id and secret in the form or HTTP Basic) and the
JWT bearer flow (``urn:ietf:params:oauth:grant-type:jwt-bearer``): an RS256 assertion with
``iss`` = client id, ``sub`` = username, ``aud`` = this login URL (or login/test
.salesforce.com) and ``exp`` at most three minutes ahead, verified with the connected
app's certificate (``public_key_file``).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import json
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from sandbox.faults import FaultState
from sandbox.salesforce.errors import ApiError, invalid_session
from sandbox.salesforce.settings import SalesforceSettings
from sandbox.store import DocumentStore

JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
#: Salesforce refuses assertions that expire further ahead than this
MAX_ASSERTION_LIFETIME = 180
CLOCK_SKEW = 5
_SECRET_META = "salesforce.token_secret"  # noqa: S105 - a meta key, not a secret


class OAuthError(Exception):
    """A refused token request: ``{"error", "error_description"}`` with a status."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(f"{error}: {description}")
        self.error = error
        self.description = description
        self.status = status


@dataclass(frozen=True)
class Session:
    user_id: str
    client_id: str
    issued_ms: int


class TokenService:
    def __init__(
        self, store: DocumentStore, faults: FaultState, settings: SalesforceSettings
    ) -> None:
        self.settings = settings
        self.faults = faults
        secret = store.get_meta(_SECRET_META)
        if not secret:
            secret = secrets.token_hex(32)
            store.set_meta(_SECRET_META, secret)
        self._key = bytes.fromhex(secret)
        self._public_key = _load_public_key(settings.public_key_file)

    # -- tokens ----------------------------------------------------------------------------
    def mint(self, client_id: str) -> tuple[str, int]:
        issued_ms = int(time.time() * 1000)
        payload = {
            "u": self.settings.user_id,
            "c": client_id,
            "i": issued_ms,
            "e": self.faults.token_epoch,
            "n": secrets.token_hex(4),
        }
        body = _b64(json.dumps(payload, separators=(",", ":")).encode())
        sig = _b64(hmac.new(self._key, body.encode(), hashlib.sha256).digest())
        return f"{self.settings.org_id[:15]}!{body}.{sig}", issued_ms

    def check(self, authorization: str | None) -> Session:
        """The session of an ``Authorization: Bearer`` (or ``OAuth``) header, or 401."""
        if not authorization:
            raise invalid_session()
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() not in ("bearer", "oauth") or not token:
            raise invalid_session()
        org, _, rest = token.strip().partition("!")
        body, _, sig = rest.partition(".")
        if org != self.settings.org_id[:15] or not body or not sig:
            raise invalid_session()
        expected = _b64(hmac.new(self._key, body.encode(), hashlib.sha256).digest())
        if not hmac.compare_digest(expected, sig):
            raise invalid_session()
        try:
            payload = json.loads(_unb64(body))
        except (ValueError, binascii.Error):
            raise invalid_session() from None
        if payload.get("e") != self.faults.token_epoch:
            raise invalid_session()
        age = time.time() * 1000 - int(payload["i"])
        if age > self.settings.token_ttl_seconds * 1000:
            raise invalid_session()
        return Session(payload["u"], payload["c"], int(payload["i"]))

    # -- the token endpoint ----------------------------------------------------------------
    def grant(
        self, form: dict[str, str], basic: tuple[str, str] | None, login_url: str
    ) -> dict[str, Any]:
        grant_type = form.get("grant_type", "")
        if grant_type == "client_credentials":
            client_id, client_secret = form.get("client_id", ""), form.get("client_secret", "")
            if basic is not None:
                client_id, client_secret = basic
            if not client_id:
                raise OAuthError("invalid_client_id", "client identifier invalid")
            if not hmac.compare_digest(client_id, self.settings.client_id):
                raise OAuthError("invalid_client_id", "client identifier invalid")
            if not hmac.compare_digest(client_secret, self.settings.client_secret):
                raise OAuthError("invalid_client", "invalid client credentials")
        elif grant_type == JWT_GRANT:
            client_id = self._verify_assertion(form.get("assertion", ""), login_url)
        elif not grant_type:
            raise OAuthError("unsupported_grant_type", "grant type not supported")
        else:
            raise OAuthError("unsupported_grant_type", "grant type not supported")
        token, issued_ms = self.mint(client_id)
        identity = f"{login_url}/id/{self.settings.org_id}/{self.settings.user_id}"
        signature = base64.b64encode(
            hmac.new(
                self.settings.client_secret.encode(),
                f"{identity}{issued_ms}".encode(),
                hashlib.sha256,
            ).digest()
        ).decode()
        return {
            "access_token": token,
            "instance_url": login_url,
            "id": identity,
            "token_type": "Bearer",
            "issued_at": str(issued_ms),
            "signature": signature,
            "scope": "api",
        }

    def _verify_assertion(self, assertion: str, login_url: str) -> str:
        if self._public_key is None:
            raise OAuthError(
                "invalid_grant", "JWT bearer flow is not enabled for this connected app"
            )
        if not assertion:
            raise OAuthError("invalid_grant", "invalid assertion")
        try:
            header = jwt.get_unverified_header(assertion)
            if header.get("alg") != "RS256":
                raise OAuthError("invalid_grant", "invalid assertion: algorithm must be RS256")
            claims = jwt.decode(
                assertion,
                self._public_key,  # type: ignore[arg-type]
                algorithms=["RS256"],
                audience=list(self._audiences(login_url)),
                leeway=CLOCK_SKEW,
                options={"require": ["exp", "iss", "sub", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise OAuthError("invalid_grant", "expired assertion") from None
        except jwt.InvalidAudienceError:
            raise OAuthError("invalid_grant", "audience is invalid") from None
        except jwt.MissingRequiredClaimError as exc:
            raise OAuthError("invalid_grant", f"invalid assertion: missing {exc.claim}") from None
        except jwt.InvalidTokenError:
            raise OAuthError("invalid_grant", "invalid assertion") from None
        if float(claims["exp"]) > time.time() + MAX_ASSERTION_LIFETIME + CLOCK_SKEW:
            raise OAuthError("invalid_grant", "expiration time is too far in the future")
        if claims["iss"] != self.settings.client_id:
            raise OAuthError("invalid_client_id", "client identifier invalid")
        if str(claims["sub"]).lower() != self.settings.username.lower():
            raise OAuthError("invalid_grant", "user hasn't approved this consumer")
        return str(claims["iss"])

    def _audiences(self, login_url: str) -> set[str]:
        out = {a.rstrip("/") for a in self.settings.audiences}
        base = login_url.rstrip("/")
        out.add(base)
        parts = urlsplit(base)
        port = f":{parts.port}" if parts.port else ""
        for host in ("127.0.0.1", "localhost"):
            out.add(f"{parts.scheme}://{host}{port}")
        return out


def _load_public_key(path: str) -> PublicKeyTypes | None:
    if not path:
        return None
    data = open(path, "rb").read()  # noqa: SIM115 - small PEM file
    if b"BEGIN CERTIFICATE" in data:
        return x509.load_pem_x509_certificate(data).public_key()
    return serialization.load_pem_public_key(data)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class ApiBudget:
    """The org's rolling daily API request count (``DailyApiRequests``): every API call
    is counted; past ``limit`` calls answer 403 ``REQUEST_LIMIT_EXCEEDED``."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._lock = threading.Lock()
        self._day = dt.date.today()
        self.used = 0

    def charge(self) -> int:
        with self._lock:
            today = dt.date.today()
            if today != self._day:
                self._day, self.used = today, 0
            if self.used >= self.limit:
                raise ApiError(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")
            self.used += 1
            return self.used

    @property
    def remaining(self) -> int:
        return max(0, self.limit - self.used)

    def header(self) -> str:
        return f"api-usage={self.used}/{self.limit}"
