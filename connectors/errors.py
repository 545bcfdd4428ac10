"""Errors connectors raise, classified once so retries and messages are uniform.

A message always names the system and what to do; it never contains a secret (connectors
pass text through :func:`connectors.redact.redact` before raising)."""

from __future__ import annotations


class ConnectorError(Exception):
    def __init__(self, system: str, message: str, *, status: int | None = None) -> None:
        self.system = system
        self.status = status
        super().__init__(f"{system}: {message}")


class TransientError(ConnectorError):
    """Worth retrying: 429, 5xx, timeouts, dropped connections. ``retry_after`` is the
    server's Retry-After in seconds when it sent one."""

    def __init__(
        self,
        system: str,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(system, message, status=status)
        self.retry_after = retry_after


class AuthError(ConnectorError):
    """Credentials rejected or session expired and re-authentication failed."""


class PermanentError(ConnectorError):
    """A request the system will never accept as sent (4xx other than 429): no retry."""


class BudgetExhaustedError(ConnectorError):
    """The hub stopped itself before using more than its share of a daily API budget."""


class SystemUnavailableError(ConnectorError):
    """Retries are exhausted: the system did not answer within the retry budget."""
