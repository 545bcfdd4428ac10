"""The WMS's one JSON error shape, used by handlers and by the fault injection middleware
alike, so a client parses every failure the same way::

    {"error": {"code": "validation_failed", "message": "...", "request_id": "req_...",
               "details": [{"field": "quantity", "code": "invalid", "message": "..."}]}}
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from typing import Any

#: Fault statuses -> the codes the WMS answers with them.
_FAULT_CODES = {429: "rate_limited", 500: "internal_error", 503: "service_unavailable"}


@dataclass(frozen=True)
class FieldIssue:
    """One field-level problem of a rejected record (``field`` names the offending field)."""

    field: str
    code: str
    message: str

    def as_json(self) -> dict[str, str]:
        return {"field": self.field, "code": self.code, "message": self.message}


@dataclass
class WmsError(Exception):
    """Raised by handlers and record operations; rendered as the error body with
    ``status``. In a batch the same error becomes that record's result instead."""

    status: int
    code: str
    message: str
    details: list[FieldIssue] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.status} {self.code}: {self.message}"

    def as_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            body["details"] = [d.as_json() for d in self.details]
        return body


def request_id() -> str:
    return "req_" + secrets.token_hex(8)


def error_body(err: WmsError) -> bytes:
    return json.dumps({"error": {**err.as_json(), "request_id": request_id()}}).encode()


def fault_error_body(status: int, message: str) -> tuple[str, bytes]:
    """``error_body`` for :class:`sandbox.faults.FaultInjectionMiddleware`."""
    code = _FAULT_CODES.get(status, "internal_error")
    return "application/json", error_body(WmsError(status, code, message))
