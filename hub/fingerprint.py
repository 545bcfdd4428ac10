"""Stable content hashes of records: the same data always gives the same fingerprint,
whatever the key order or the Python types JSON would blur (Decimal, date)."""

from __future__ import annotations

import hashlib
import json
from datetime import date, datetime
from decimal import Decimal
from typing import Any


def _default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    raise TypeError(f"cannot fingerprint {type(value).__name__}")


def canonical_json(data: Any) -> str:
    return json.dumps(
        data, sort_keys=True, separators=(",", ":"), default=_default, ensure_ascii=False
    )


def fingerprint(data: Any) -> str:
    """SHA-256 hex digest of the canonical JSON form."""
    return hashlib.sha256(canonical_json(data).encode()).hexdigest()
