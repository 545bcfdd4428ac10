"""``Idempotency-Key`` on writes, after the IETF httpapi draft (and Stripe's practice).

The first request with a key runs and its answer (status, body, headers) is stored with a
fingerprint of the request (method, path, canonical JSON body). A retry with the same key
and the same request gets the stored answer again, marked ``Idempotent-Replayed: true``,
without running twice - which is what makes a batch retried after a dropped connection
safe. The same key with a different request is a client bug: 422
``idempotency_key_reused``. A retry arriving while the first is still running: 409
``idempotency_request_in_progress``. Answers are kept ``idempotency_ttl_seconds`` in the
store, so they survive a restart; 5xx answers are not kept (the client should retry).
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from dataclasses import dataclass
from typing import Any

from sandbox.store import DocumentStore
from sandbox.wms.errors import WmsError

IDEMPOTENCY = "idempotency"
MAX_KEY_LENGTH = 255


@dataclass(frozen=True)
class StoredAnswer:
    status: int
    body: bytes
    headers: dict[str, str]


def fingerprint(method: str, path: str, body: bytes) -> str:
    """Same request = same method, path and JSON value (key order and spacing ignored)."""
    try:
        canonical = json.dumps(json.loads(body), sort_keys=True, separators=(",", ":"))
    except ValueError:
        canonical = body.decode("latin-1")
    return hashlib.sha256(f"{method} {path}\n{canonical}".encode()).hexdigest()


class IdempotencyKeys:
    def __init__(self, store: DocumentStore, ttl_seconds: int) -> None:
        self.store = store
        self.ttl = ttl_seconds
        self._running: set[str] = set()
        self._lock = threading.Lock()

    def begin(self, key: str, request_fp: str) -> StoredAnswer | None:
        """The stored answer to replay, or None after reserving the key for this request."""
        if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable():
            raise WmsError(
                400,
                "invalid_idempotency_key",
                f"Idempotency-Key must be 1-{MAX_KEY_LENGTH} printable characters",
            )
        with self._lock:
            if key in self._running:
                raise WmsError(
                    409,
                    "idempotency_request_in_progress",
                    f"a request with Idempotency-Key {key} is still being processed; retry",
                    headers={"retry-after": "1"},
                )
            doc = self.store.get(IDEMPOTENCY, key)
            if doc is not None and doc["stored_at"] + self.ttl >= time.time():
                if doc["fingerprint"] != request_fp:
                    raise WmsError(
                        422,
                        "idempotency_key_reused",
                        f"Idempotency-Key {key} was already used for a different request; "
                        "use a new key for a new request",
                    )
                return StoredAnswer(doc["status"], doc["body"].encode(), dict(doc["headers"]))
            self._running.add(key)
            return None

    def release(self, key: str) -> None:
        """Forget a key whose request crashed, so the client's retry runs it again."""
        with self._lock:
            self._running.discard(key)

    def finish(
        self, key: str, request_fp: str, status: int, body: bytes, headers: dict[str, Any]
    ) -> None:
        """Keep the answer (unless it is a 5xx) and release the key."""
        try:
            if status < 500:
                self.store.put(
                    IDEMPOTENCY,
                    key,
                    {
                        "fingerprint": request_fp,
                        "status": status,
                        "body": body.decode(),
                        "headers": {k: str(v) for k, v in headers.items()},
                        "stored_at": time.time(),
                    },
                )
        finally:
            with self._lock:
                self._running.discard(key)
