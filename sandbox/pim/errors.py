"""Akeneo's error bodies: ``{"code": <status>, "message": ...}`` plus ``errors`` for
validation failures and ``_links.documentation`` for format errors, used for every error
the emulator answers (the fault injection middleware's included) so clients parse one
shape."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

DOC_PRODUCTS = "http://api.akeneo.com/api-reference.html#patch_products__code_"
DOC_FORMAT = "http://api.akeneo.com/api-reference.html#Product"
JSON = "application/json"


@dataclass
class PimError(Exception):
    """Raised by handlers; rendered as Akeneo's error JSON with ``status``."""

    status: int
    message: str
    errors: list[dict[str, Any]] | None = None
    documentation: str | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.status}: {self.message}"

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.status, "message": self.message}
        if self.errors:
            out["errors"] = self.errors
        if self.documentation:
            out["_links"] = {"documentation": {"href": self.documentation}}
        return out


def validation_failed(errors: list[dict[str, Any]]) -> PimError:
    """422 "Validation failed." with one entry per violated constraint."""
    return PimError(422, "Validation failed.", errors=errors)


def bad_property(message: str) -> PimError:
    """422 for a property the standard format does not accept (Akeneo links its docs)."""
    return PimError(
        422, f"{message} Check the expected format on the API documentation.", None, DOC_FORMAT
    )


def violation(
    prop: str,
    message: str,
    attribute: str | None = None,
    locale: str | None = None,
    scope: str | None = None,
) -> dict[str, Any]:
    entry: dict[str, Any] = {"property": prop, "message": message}
    if attribute is not None:
        entry |= {"attribute": attribute, "locale": locale, "scope": scope}
    return entry


def fault_error_body(status: int, message: str) -> tuple[str, bytes]:
    """``error_body`` for :class:`sandbox.faults.FaultInjectionMiddleware`."""
    return JSON, json.dumps({"code": status, "message": message}).encode()
