"""Salesforce record ids: 3-character key prefix, pod, serial, and the 3-character
case-safe checksum that turns the 15-character id into the 18-character one."""

from __future__ import annotations

import re

_CHECKSUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
#: a pod id the seed (``5g``) never uses, so ids made by the API never collide with seeded ones
POD = "8H"
_ID = re.compile(r"^[a-zA-Z0-9]{15}(?:[A-Z0-5]{3})?$")


def checksum(short: str) -> str:
    out = ""
    for start in (0, 5, 10):
        chunk = short[start : start + 5]
        bits = sum(1 << i for i, ch in enumerate(chunk) if ch.isupper())
        out += _CHECKSUM[bits]
    return out


def make_id(prefix: str, serial: int) -> str:
    short = f"{prefix}{POD}{serial:010d}"
    return short + checksum(short)


def normalize(value: str) -> str | None:
    """The 18-character form of a 15- or 18-character id, or None when malformed."""
    if not isinstance(value, str) or not _ID.match(value):
        return None
    short = value[:15]
    full = short + checksum(short)
    if len(value) == 18 and value[15:].upper() != full[15:]:
        return None
    return full
