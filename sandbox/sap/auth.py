"""Basic authentication, logon sessions and CSRF tokens the way SAP Gateway does them.

A successful basic logon opens a session (cookie ``SAP_SESSIONID_<SID>_<client>``); a
``GET`` with ``X-CSRF-Token: Fetch`` returns a token (header and ``sap-XSRF_...`` cookie)
that every modifying request must echo. A ``token_expiry`` fault bumps the fault state's
epoch, which invalidates every session and token issued before it: clients then see
``403`` with ``x-csrf-token: Required`` and must fetch a new token.
"""

from __future__ import annotations

import base64
import binascii
import secrets
import threading
from dataclasses import dataclass

from sandbox.faults import FaultState
from sandbox.sap.settings import SapSettings


@dataclass
class Grant:
    user: str
    epoch: int


class AuthError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str]) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


class SessionManager:
    def __init__(self, settings: SapSettings, faults: FaultState) -> None:
        self.settings = settings
        self.faults = faults
        self._sessions: dict[str, Grant] = {}
        self._tokens: dict[str, Grant] = {}
        self._session_token: dict[str, str] = {}
        self._lock = threading.Lock()

    @property
    def session_cookie(self) -> str:
        return f"SAP_SESSIONID_{self.settings.system_id}_{self.settings.client}"

    @property
    def xsrf_cookie(self) -> str:
        return f"sap-XSRF_{self.settings.system_id}_{self.settings.client}"

    def _unauthorized(self, message: str) -> AuthError:
        realm = (
            f"SAP NetWeaver Application Server [{self.settings.system_id}/{self.settings.client}]"
        )
        return AuthError(401, message, {"www-authenticate": f'Basic realm="{realm}"'})

    def authenticate(
        self, headers: dict[str, str], cookies: dict[str, str], sap_client: str | None
    ) -> tuple[str, str | None]:
        """Return (user, new session id or None when an existing session was used)."""
        if sap_client is not None and sap_client != self.settings.client:
            raise self._unauthorized(f"Logon failed: client {sap_client} is not available")
        auth = headers.get("authorization", "")
        if auth.lower().startswith("basic "):
            try:
                user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                raise self._unauthorized("Logon failed: malformed credentials") from None
            if not (
                secrets.compare_digest(user.upper(), self.settings.user.upper())
                and secrets.compare_digest(password, self.settings.password)
            ):
                raise self._unauthorized("Logon failed: name or password is incorrect")
            sid = cookies.get(self.session_cookie)
            if sid and self._valid(self._sessions.get(sid), user.upper()):
                return user.upper(), None
            return user.upper(), self._open_session(user.upper())
        sid = cookies.get(self.session_cookie)
        grant = self._sessions.get(sid or "")
        if grant and grant.epoch == self.faults.token_epoch:
            return grant.user, None
        raise self._unauthorized("Logon failed: no credentials or session expired")

    def _open_session(self, user: str) -> str:
        sid = secrets.token_urlsafe(24)
        with self._lock:
            self._sessions[sid] = Grant(user, self.faults.token_epoch)
        return sid

    def _valid(self, grant: Grant | None, user: str) -> bool:
        return grant is not None and grant.user == user and grant.epoch == self.faults.token_epoch

    def fetch_token(self, user: str, session_id: str | None) -> str:
        """Same token for the same live session (as Gateway does), otherwise a new one."""
        with self._lock:
            if session_id:
                existing = self._session_token.get(session_id)
                if existing and self._valid(self._tokens.get(existing), user):
                    return existing
            token = base64.b64encode(secrets.token_bytes(18)).decode()
            self._tokens[token] = Grant(user, self.faults.token_epoch)
            if session_id:
                self._session_token[session_id] = token
            return token

    def check_token(self, user: str, token: str | None) -> bool:
        if not token or token.lower() == "fetch":
            return False
        return self._valid(self._tokens.get(token), user)
