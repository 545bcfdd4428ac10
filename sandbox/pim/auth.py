"""OAuth 2 as Akeneo runs it: the client id and secret by HTTP Basic, the API user's
username and password (or a refresh token) in the body, bearer tokens on every call.

Tokens live in memory, as sessions do: a restarted PIM forgets them and clients
re-authenticate (the data itself survives in the DocumentStore). The ``token_expiry``
fault bumps :attr:`FaultState.token_epoch`; every access token issued before the bump is
then refused with Akeneo's 401, while refresh tokens stay valid so the refresh grant is
what a client uses to recover."""

from __future__ import annotations

import base64
import binascii
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any

from sandbox.faults import FaultState
from sandbox.pim.errors import PimError
from sandbox.pim.settings import PimSettings

INVALID_CLIENT = (
    'Parameter "client_id" is missing or does not match any client, or secret is invalid'
)
INVALID_USER = "No user found for the given username and password"
INVALID_REFRESH = "Refresh token is invalid or has expired"
INVALID_GRANT_TYPE = 'Parameter "grant_type" is missing, empty or invalid'
TOKEN_INVALID = "The access token provided is invalid."  # noqa: S105 - a message
TOKEN_EXPIRED = "The access token provided has expired."  # noqa: S105 - a message
AUTH_REQUIRED = "Authentication is required"


@dataclass(frozen=True)
class _Token:
    username: str
    expires_at: float
    epoch: int


class TokenIssuer:
    """Issues and checks access and refresh tokens for the one configured client."""

    def __init__(self, settings: PimSettings, faults: FaultState) -> None:
        self.settings = settings
        self.faults = faults
        self._lock = threading.Lock()
        self._access: dict[str, _Token] = {}
        self._refresh: dict[str, _Token] = {}

    def grant(self, authorization: str | None, body: dict[str, Any]) -> dict[str, Any]:
        """Answer a POST to the token endpoint (raises PimError with Akeneo's message)."""
        self._check_client(authorization)
        grant_type = body.get("grant_type")
        if grant_type == "password":
            username, password = body.get("username"), body.get("password")
            if not username or not password:
                raise PimError(422, 'Parameter "username" or "password" is missing or empty')
            if not (
                secrets.compare_digest(str(username), self.settings.username)
                and secrets.compare_digest(str(password), self.settings.password)
            ):
                raise PimError(422, INVALID_USER)
            return self._issue(str(username))
        if grant_type == "refresh_token":
            token = str(body.get("refresh_token") or "")
            with self._lock:
                found = self._refresh.pop(token, None)  # refresh tokens are single use
            if found is None or found.expires_at < time.time():
                raise PimError(422, INVALID_REFRESH)
            return self._issue(found.username)
        raise PimError(422, INVALID_GRANT_TYPE)

    def _check_client(self, authorization: str | None) -> None:
        scheme, _, encoded = (authorization or "").partition(" ")
        if scheme.lower() != "basic" or not encoded:
            raise PimError(422, INVALID_CLIENT)
        try:
            decoded = base64.b64decode(encoded, validate=True).decode()
            client_id, sep, secret = decoded.partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise PimError(422, INVALID_CLIENT) from None
        if not (
            sep
            and secrets.compare_digest(client_id, self.settings.client_id)
            and secrets.compare_digest(secret, self.settings.secret)
        ):
            raise PimError(422, INVALID_CLIENT)

    def _issue(self, username: str) -> dict[str, Any]:
        now = time.time()
        access, refresh = secrets.token_urlsafe(48), secrets.token_urlsafe(48)
        epoch = self.faults.token_epoch
        with self._lock:
            self._access[access] = _Token(username, now + self.settings.token_ttl_seconds, epoch)
            self._refresh[refresh] = _Token(
                username, now + self.settings.refresh_ttl_seconds, epoch
            )
        return {
            "access_token": access,
            "expires_in": self.settings.token_ttl_seconds,
            "token_type": "bearer",
            "scope": None,
            "refresh_token": refresh,
        }

    def authenticate(self, authorization: str | None) -> str:
        """The API user behind a bearer token; 401 as Akeneo answers otherwise."""
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise PimError(401, AUTH_REQUIRED)
        with self._lock:
            found = self._access.get(token)
        if found is None or found.epoch != self.faults.token_epoch:
            raise PimError(401, TOKEN_INVALID)
        if found.expires_at < time.time():
            raise PimError(401, TOKEN_EXPIRED)
        return found.username
