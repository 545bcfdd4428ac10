"""Salesforce's error shapes.

REST resources answer errors as a JSON *list* of ``{message, errorCode, fields}``; the
per-record results of sObject Collections carry ``{statusCode, message, fields}``; Bulk
API 2.0 puts ``CODE:message:fields --`` in the ``sf__Error`` column; the OAuth endpoint
answers ``{error, error_description}``. Clients branch on these codes (simple-salesforce
re-authenticates on ``INVALID_SESSION_ID``), so they are reproduced exactly.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from starlette.responses import JSONResponse

NOT_FOUND_MESSAGE = "The requested resource does not exist"


class ApiError(Exception):
    """A request-level failure rendered as ``[{message, errorCode[, fields]}]``."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        fields: list[str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.fields = fields
        self.headers = headers or {}

    def body(self) -> list[dict[str, Any]]:
        item: dict[str, Any] = {"message": self.message, "errorCode": self.code}
        if self.fields is not None:
            item["fields"] = self.fields
        return [item]

    def response(self, extra_headers: dict[str, str] | None = None) -> JSONResponse:
        return JSONResponse(
            self.body(), status_code=self.status, headers={**self.headers, **(extra_headers or {})}
        )


def not_found(message: str = NOT_FOUND_MESSAGE) -> ApiError:
    return ApiError(404, "NOT_FOUND", message)


def retired_version(version: str, oldest: str) -> ApiError:
    """A request to an API version the org no longer serves: 410 GONE (the wording is the
    emulator's; the status and the code are Salesforce's)."""
    return ApiError(
        410,
        "UNSUPPORTED_API_VERSION",
        f"API version {version} is retired and no longer available; this org serves "
        f"version {oldest} and later",
    )


def malformed_query(message: str) -> ApiError:
    return ApiError(400, "MALFORMED_QUERY", message)


def invalid_session() -> ApiError:
    return ApiError(
        401,
        "INVALID_SESSION_ID",
        "Session expired or invalid",
        headers={"WWW-Authenticate": 'Token realm="Salesforce"'},
    )


@dataclass
class RecordError:
    """One error on one record (a SaveResult's error)."""

    code: str
    message: str
    fields: list[str] = field(default_factory=list)

    def as_collection(self) -> dict[str, Any]:
        return {"statusCode": self.code, "message": self.message, "fields": self.fields}

    def as_rest(self) -> dict[str, Any]:
        return {"message": self.message, "errorCode": self.code, "fields": self.fields}

    def as_bulk(self) -> str:
        return f"{self.code}:{self.message}:{','.join(self.fields)} --"


class RecordRejected(Exception):
    """A write of one record refused; holds the SaveResult errors."""

    def __init__(self, *errors: RecordError, status: int = 400) -> None:
        super().__init__("; ".join(f"{e.code}: {e.message}" for e in errors))
        self.errors = list(errors)
        self.status = status

    def rest_response(self) -> JSONResponse:
        return JSONResponse([e.as_rest() for e in self.errors], status_code=self.status)


def oauth_error(error: str, description: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": error, "error_description": description}, status_code=status)


_FAULTS = {
    429: ("REQUEST_LIMIT_EXCEEDED", "ConcurrentRequests Limit exceeded."),
    500: (
        "UNKNOWN_EXCEPTION",
        "An unexpected error occurred. Please include this ErrorId if you contact support: "
        "1963787419-52601 (-1187316291)",
    ),
    503: ("SERVER_UNAVAILABLE", "Server temporarily unavailable, please retry later."),
}


def fault_error_body(status: int, message: str) -> tuple[str, bytes]:
    """Bodies for injected faults, as Salesforce sends them (the sandbox reason appended)."""
    code, text = _FAULTS.get(status, ("UNKNOWN_EXCEPTION", message))
    body = [{"message": f"{text} ({message})", "errorCode": code}]
    return "application/json;charset=UTF-8", json.dumps(body).encode()
