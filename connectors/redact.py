"""Secrets never reach a log line or an exception text.

Connectors register every secret they hold (passwords, client secrets, tokens, private
keys) with :func:`register_secret`; :func:`redact` masks them in any text, and
:func:`install_log_redaction` masks them in every log record, including Dagster's."""

from __future__ import annotations

import logging
import re
import threading

MASK = "***"
_MIN_LEN = 4
_lock = threading.Lock()
_secrets: set[str] = set()
#: the registered secrets, longest first (so a secret containing another is masked whole)
_ordered: tuple[str, ...] = ()

# Credentials that may appear in URLs or headers even before registration.
_GENERIC = re.compile(
    r"(?i)(authorization:\s*(?:bearer|basic)\s+)[^\s,'\"]+|"
    r"((?:access_token|refresh_token|client_secret|password|assertion)[\"']?\s*[=:]\s*[\"']?)"
    r"[^&\s,'\"]+|(://[^:/@\s]+:)[^@/\s]+(@)"
)


def register_secret(value: str | None) -> None:
    """Mask ``value`` wherever it appears from now on. Secrets are kept as plain strings,
    not one regular expression: a long-lived process (a worker, the test suite) registers a
    new access token on every login, and recompiling an alternation of all of them on each
    one took a tenth of the suite's CPU."""
    global _ordered
    if not value or len(value) < _MIN_LEN:
        return
    with _lock:
        if value in _secrets:
            return
        _secrets.add(value)
        _ordered = tuple(sorted(_secrets, key=len, reverse=True))


def redact(text: str) -> str:
    for secret in _ordered:
        if secret in text:
            text = text.replace(secret, MASK)

    def _mask(match: re.Match[str]) -> str:
        if match.group(1):
            return match.group(1) + MASK
        if match.group(2):
            return match.group(2) + MASK
        return f"{match.group(3)}{MASK}{match.group(4)}"

    return _GENERIC.sub(_mask, text)


_installed = False


def install_log_redaction() -> None:
    """Mask secrets in every log record created from now on, whichever logger or handler
    (Dagster's included) ends up emitting it: the record factory is the one place all
    records pass through."""
    global _installed
    with _lock:
        if _installed:
            return
        previous = logging.getLogRecordFactory()

        def factory(*args: object, **kwargs: object) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            if _ordered or record.args or isinstance(record.msg, str):
                message = record.getMessage()
                cleaned = redact(message)
                if cleaned != message:
                    record.msg, record.args = cleaned, None
            return record

        logging.setLogRecordFactory(factory)
        _installed = True


def redact_url(url: str) -> str:
    """A database URL safe to print: the password replaced by ***. Text that does not
    parse as a URL is shown only up to any ``:`` after ``//`` (it may still hold one)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        scheme, sep, rest = url.partition("//")
        return f"{scheme}{sep}{rest.split(':', 1)[0]}{'***' if ':' in rest else ''}"
