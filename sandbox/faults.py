"""Fault injection shared by every emulator.

Each emulator owns one :class:`FaultState`; faults are switched at run time through the
admin routes (``/__sandbox/faults``) that :func:`admin_routes` adds to the emulator's app, or
through ``hub sandbox fault``.  The ASGI :class:`FaultInjectionMiddleware` applies the
transport-level faults (429, 5xx, latency, dropped connections, token expiry); per-record
rejections are protocol specific, so write handlers ask :meth:`FaultState.should_reject`.

Faults are deterministic for a given seed so a test that sees a fault once sees it again.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import re
import threading
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Literal

from pydantic import BaseModel, Field
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

FaultMode = Literal["429", "500", "503", "latency", "drop", "token_expiry", "reject"]

ADMIN_PREFIX = "/__sandbox"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Builds the protocol's own error body for a status: returns (content_type, body bytes).
ErrorBody = Callable[[int, str], tuple[str, bytes]]


class FaultSpec(BaseModel):
    """One active fault. ``rate`` is the share of matching requests hit, ``count`` caps how
    many requests are hit before the fault clears itself (``None``: until cleared)."""

    mode: FaultMode
    rate: float = Field(default=1.0, ge=0.0, le=1.0)
    count: int | None = Field(default=None, ge=1)
    retry_after: int = Field(default=1, ge=0, description="seconds, for 429 and 503")
    latency_ms: int = Field(default=0, ge=0)
    after: int = Field(
        default=0, ge=0, description="requests to let through before the fault starts"
    )
    path: str | None = Field(default=None, description="regex; only matching paths are hit")


class FaultState:
    """Thread-safe set of active faults for one emulator."""

    def __init__(self, seed: int = 0) -> None:
        self._lock = threading.Lock()
        self._faults: list[FaultSpec] = []
        self._hits: list[int] = []
        self._seen: list[int] = []
        self._rng = random.Random(seed)
        self.token_epoch = 0
        self.reject_rate = 0.0

    def add(self, spec: FaultSpec) -> None:
        with self._lock:
            if spec.mode == "reject":
                self.reject_rate = spec.rate
                return
            if spec.mode == "token_expiry" and spec.after == 0:
                self.token_epoch += 1
                return
            self._faults.append(spec)
            self._hits.append(0)
            self._seen.append(0)

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()
            self._hits.clear()
            self._seen.clear()
            self.reject_rate = 0.0

    def active(self) -> list[dict[str, Any]]:
        with self._lock:
            out = [f.model_dump() for f in self._faults]
            if self.reject_rate:
                out.append(FaultSpec(mode="reject", rate=self.reject_rate).model_dump())
            return out

    def decide(self, path: str) -> FaultSpec | None:
        """Pick the fault (if any) that hits this request, consuming its budget."""
        with self._lock:
            for i, spec in enumerate(self._faults):
                if spec.path and not re.search(spec.path, path):
                    continue
                self._seen[i] += 1
                if self._seen[i] <= spec.after:
                    continue
                if spec.rate < 1.0 and self._rng.random() >= spec.rate:
                    continue
                self._hits[i] += 1
                if spec.count is not None and self._hits[i] >= spec.count:
                    del self._faults[i], self._hits[i], self._seen[i]
                if spec.mode == "token_expiry":
                    self.token_epoch += 1
                    return None
                return spec
            return None

    def should_reject(self, record_key: str) -> bool:
        """Deterministic per-record rejection: the same key is always rejected at a rate."""
        if self.reject_rate <= 0:
            return False
        digest = hashlib.sha256(record_key.encode()).digest()
        return int.from_bytes(digest[:4], "big") / 2**32 < self.reject_rate


class FaultInjectionMiddleware:
    """Pure ASGI middleware so dropped connections can cut a body half-way."""

    def __init__(self, app: ASGIApp, state: FaultState, error_body: ErrorBody) -> None:
        self.app = app
        self.state = state
        self.error_body = error_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(ADMIN_PREFIX):
            await self.app(scope, receive, send)
            return
        spec = self.state.decide(scope["path"])
        if spec is None:
            await self.app(scope, receive, send)
            return
        if spec.mode == "latency":
            await asyncio.sleep(spec.latency_ms / 1000)
            await self.app(scope, receive, send)
            return
        if spec.mode == "drop":
            await self.app(scope, receive, _truncating_send(send))
            return
        status = int(spec.mode)
        content_type, body = self.error_body(status, _REASONS[status])
        headers = [
            (b"content-type", content_type.encode()),
            (b"content-length", str(len(body)).encode()),
        ]
        if status in (429, 503):
            headers.append((b"retry-after", str(spec.retry_after).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


_REASONS = {
    429: "Too many requests: the sandbox is throttling this client",
    500: "Internal server error injected by the sandbox",
    503: "Service unavailable: the sandbox is simulating an outage",
}


class DroppedConnection(Exception):
    """Raised inside the ASGI app so the server aborts the connection mid-body."""


def _truncating_send(send: Send) -> Send:
    """Forward the response head and half the first body chunk, then abort the connection."""

    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            await send(message)
            return
        body = message.get("body", b"")
        await send(
            {
                "type": "http.response.body",
                "body": body[: max(1, len(body) // 2)],
                "more_body": True,
            }
        )
        raise DroppedConnection("connection dropped by sandbox fault injection")

    return wrapped


def admin_routes(state: FaultState) -> list[Route]:
    """Routes every emulator mounts: GET/POST/DELETE ``/__sandbox/faults``."""

    async def faults(request: Request) -> JSONResponse:
        if request.method == "POST":
            payload = await request.json()
            specs = payload if isinstance(payload, list) else [payload]
            for item in specs:
                state.add(FaultSpec.model_validate(item))
        elif request.method == "DELETE":
            state.clear()
        return JSONResponse({"faults": state.active(), "token_epoch": state.token_epoch})

    async def health(_: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    return [
        Route(f"{ADMIN_PREFIX}/faults", faults, methods=["GET", "POST", "DELETE"]),
        Route(f"{ADMIN_PREFIX}/health", health, methods=["GET"]),
    ]
