"""API call counting for the benchmarks: every HTTP request to an OData service counts
(including ones answered by an injected fault), ``$batch`` counts once, and the operations
inside batches are counted separately."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from sandbox.faults import ADMIN_PREFIX, ASGIApp, Receive, Scope, Send

ODATA_PREFIX = "/sap/opu/odata/"


class CallCounter:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.api_calls = 0
        self.batch_operations = 0
        self.by_method: Counter[str] = Counter()
        self.by_service: Counter[str] = Counter()

    def record(self, method: str, path: str) -> None:
        service = path[len(ODATA_PREFIX) :].split("/")[1] if path.count("/") > 4 else ""
        with self._lock:
            self.api_calls += 1
            self.by_method[method] += 1
            if service:
                self.by_service[service] += 1

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "api_calls": self.api_calls,
                "batch_operations": self.batch_operations,
                "by_method": dict(self.by_method),
                "by_service": dict(self.by_service),
            }

    def reset(self) -> None:
        with self._lock:
            self.api_calls = 0
            self.batch_operations = 0
            self.by_method.clear()
            self.by_service.clear()

    def wrap(self, app: ASGIApp) -> ASGIApp:
        async def counting(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] == "http" and scope["path"].startswith(ODATA_PREFIX):
                self.record(scope["method"], scope["path"])
            await app(scope, receive, send)

        return counting


def stats_routes(counter: CallCounter) -> list[Route]:
    """``GET /__sandbox/stats``; ``DELETE`` it (or ``POST /__sandbox/stats/reset``) to reset."""

    async def stats(request: Request) -> JSONResponse:
        if request.method in ("DELETE", "POST"):
            counter.reset()
        return JSONResponse(counter.snapshot())

    return [
        Route(f"{ADMIN_PREFIX}/stats", stats, methods=["GET", "DELETE"]),
        Route(f"{ADMIN_PREFIX}/stats/reset", stats, methods=["POST"]),
    ]
