"""Counting every API call an emulator answers, the same way for all of them, so a test
can say "the second sync made no writes" and a benchmark can print API calls per record.

The runner wraps each emulator's ASGI app in :class:`CallCounting`; it counts requests
outside the admin prefix by method (writes = anything but GET/HEAD) and answers
``GET /__sandbox/calls`` (the counts) and ``DELETE /__sandbox/calls`` (reset) itself."""

from __future__ import annotations

import json
import threading
from collections import Counter
from typing import Any

from sandbox.faults import ADMIN_PREFIX, ASGIApp, Receive, Scope, Send

CALLS_PATH = f"{ADMIN_PREFIX}/calls"
READS = frozenset({"GET", "HEAD"})


class CallCounting:
    """ASGI middleware counting API calls; thread-safe (uvicorn may run handlers in
    threads) and cheap (one lock, no per-call allocation beyond the counter update)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._lock = threading.Lock()
        self.by_method: Counter[str] = Counter()
        self.by_call: Counter[str] = Counter()  # "METHOD /path", for telling writes apart

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            by_method, by_call = dict(self.by_method), dict(self.by_call)
        writes = sum(n for m, n in by_method.items() if m not in READS)
        return {
            "calls": sum(by_method.values()),
            "writes": writes,
            "by_method": by_method,
            "by_call": by_call,
        }

    def reset(self) -> None:
        with self._lock:
            self.by_method.clear()
            self.by_call.clear()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if path == CALLS_PATH:
            if scope["method"] == "DELETE":
                self.reset()
            await _json(send, self.snapshot())
            return
        if not path.startswith(ADMIN_PREFIX):
            with self._lock:
                self.by_method[scope["method"]] += 1
                self.by_call[f"{scope['method']} {path}"] += 1
        await self.app(scope, receive, send)


async def _json(send: Send, body: dict[str, Any]) -> None:
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})
