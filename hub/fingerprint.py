"""Stable content hashes of records: the same data always gives the same fingerprint,
whatever the key order or the Python types JSON would blur (Decimal, date).

The canonical JSON is made by orjson, which the initial load calls for every record it
reads (a tenth of its time with the standard library's encoder). Its output is the
standard library's ``json.dumps(sort_keys=True, separators=(",", ":"),
ensure_ascii=False)`` byte for byte, so fingerprints stored before stay valid
(tests/unit/test_fingerprint.py holds the two to each other); what orjson refuses
(integers beyond 64 bits, non-text keys) falls back to the standard library. Floats in
exponent form (1e16, 1e-05) are the one difference; canonical records have none.
"""

from __future__ import annotations

import hashlib
import json
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import orjson

_ORJSON_OPTIONS = orjson.OPT_SORT_KEYS | orjson.OPT_PASSTHROUGH_DATETIME


def _default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    raise TypeError(f"cannot fingerprint {type(value).__name__}")


def canonical_json(data: Any) -> str:
    return canonical_json_bytes(data).decode()


def canonical_json_bytes(data: Any) -> bytes:
    """The canonical JSON form as UTF-8 (what the fingerprint hashes)."""
    try:
        return orjson.dumps(data, default=_default, option=_ORJSON_OPTIONS)
    except orjson.JSONEncodeError:
        text = json.dumps(
            data, sort_keys=True, separators=(",", ":"), default=_default, ensure_ascii=False
        )
        return text.encode()


def fingerprint(data: Any) -> str:
    """SHA-256 hex digest of the canonical JSON form."""
    return hashlib.sha256(canonical_json_bytes(data)).hexdigest()
