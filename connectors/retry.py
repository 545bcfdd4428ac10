"""Retries with tenacity: bounded attempts and total time, exponential backoff with
jitter, and the server's ``Retry-After`` honoured when it sends one. Only
:class:`~connectors.errors.TransientError` is retried, never a 400."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential_jitter,
)

from connectors.errors import SystemUnavailableError, TransientError

T = TypeVar("T")
log = logging.getLogger("hub.connectors")


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 6
    max_seconds: float = 120.0
    initial_wait: float = 0.5
    max_wait: float = 30.0
    jitter: float = 0.5


class _WaitRetryAfter:
    """Wait what the server asked (capped), else exponential backoff with jitter."""

    def __init__(self, policy: RetryPolicy) -> None:
        self.policy = policy
        self.fallback = wait_exponential_jitter(
            initial=policy.initial_wait, max=policy.max_wait, jitter=policy.jitter
        )

    def __call__(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, TransientError) and exc.retry_after is not None:
            return min(max(exc.retry_after, 0.0), self.policy.max_wait)
        return float(self.fallback(state))


def call_with_retry(system: str, fn: Callable[[], T], policy: RetryPolicy | None = None) -> T:
    """Run ``fn``, retrying transient failures; raise SystemUnavailableError naming the
    system when the retry budget is spent."""
    policy = policy or RetryPolicy()

    def _log(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        log.warning("%s: attempt %d failed (%s); retrying", system, state.attempt_number, exc)

    retrying = Retrying(
        stop=stop_after_attempt(policy.max_attempts) | stop_after_delay(policy.max_seconds),
        wait=_WaitRetryAfter(policy),
        retry=retry_if_exception_type(TransientError),
        before_sleep=_log,
        reraise=True,
    )
    try:
        return retrying(fn)
    except TransientError as exc:
        # what happened, not the policy: "6 attempts / 120s" read as two minutes of
        # retrying when the attempts had taken five seconds
        attempts = retrying.statistics.get("attempt_number", policy.max_attempts)
        spent = retrying.statistics.get("delay_since_first_attempt", 0.0)
        raise SystemUnavailableError(
            system,
            f"still failing after {attempts} attempts over {spent:.0f}s (retry budget "
            f"{policy.max_attempts} attempts / {policy.max_seconds:.0f}s): {exc}. Check "
            "that the system is up; the sync resumes from its cursor next run.",
            status=exc.status,
        ) from exc


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After as seconds (delta-seconds form; HTTP-dates fall back to backoff)."""
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        return None
