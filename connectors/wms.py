"""WMS REST connector (the API in docs/sandbox-wms.md), over the shared httpx client.

Reads page through ``GET /v1/allocations`` with the server's opaque ``next_cursor``; the
hub's own cursor is the composite ``(updated_at, id)`` of the last record committed, the
stamp an aware UTC time in ISO 8601 and the id compared as the WMS orders it (a numeric id
as a number). Each read asks ``updated_since`` = that instant less
``WMS_CURSOR_OVERLAP_SECONDS`` (5 minutes), so a record committed late with an earlier
stamp is read too; with no overlap, what the cursor already covers at its instant is
dropped - no record is skipped when many share a timestamp (a batch commits with one).
Writes go through ``POST /v1/allocations:batchUpsert`` with an ``Idempotency-Key`` derived
from the batch's content, so a batch retried after a dropped connection is answered from
the WMS's record of the first attempt instead of being applied twice.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import secrets
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from connectors.base import (
    Batch,
    Health,
    MappedObjects,
    NativeRecord,
    Outcome,
    Window,
    WriteResult,
)
from connectors.errors import AuthError, ConnectorError, TransientError
from connectors.http import make_client, raise_for_status, transport_error
from connectors.redact import redact, register_secret
from connectors.retry import RetryPolicy, call_with_retry, parse_retry_after
from connectors.settings import (
    CURSOR_OVERLAP_SECONDS,
    ca_bundle_env,
    cursor_overlap_env,
    env_names,
    env_var,
    read_settings,
    timeout_env,
)

SYSTEM = "wms"
ENTITY = "allocation"
ALLOCATIONS = "/v1/allocations"
BATCH_UPSERT = "/v1/allocations:batchUpsert"
#: Server-maintained fields: never sent on a write.
READ_ONLY = ("created_at", "updated_at", "version")
_OUTCOMES = {
    "created": Outcome.CREATED,
    "updated": Outcome.UPDATED,
    "unchanged": Outcome.UNCHANGED,
}


@dataclass
class WmsSettings:
    url: str = field(metadata=env_var("WMS_URL", required=True))
    api_key: str = field(metadata=env_var("WMS_API_KEY", secret=True))
    ca_bundle: str | None = field(default=None, metadata=ca_bundle_env())
    timeout: float = field(default=30.0, metadata=timeout_env())
    page_limit: int = 500
    batch_limit: int = 500
    keys_per_query: int = 100
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    #: Re-read on ``api_key_expired`` (a rotated key); defaults to the configured key.
    api_key_provider: Callable[[], str] | None = None
    #: How far before its cursor each incremental read starts again, so a record committed
    #: late with an earlier stamp is still read (the re-read ones are unchanged for the
    #: sync's fingerprints); a larger overlap costs only re-reading. 0 turns it off.
    cursor_overlap_seconds: float = field(
        default=CURSOR_OVERLAP_SECONDS,
        metadata=cursor_overlap_env("WMS_CURSOR_OVERLAP_SECONDS"),
    )


class WmsConnector:
    system = SYSTEM

    def __init__(self, settings: WmsSettings) -> None:
        self.settings = settings
        self._key = settings.api_key
        register_secret(self._key)
        self.client = make_client(
            settings.url, ca_bundle=settings.ca_bundle, timeout=settings.timeout
        )
        # Scopes idempotency keys to this connector (one sync run): its retries replay,
        # while an identical batch pushed by a later run (a resync) is applied afresh.
        self._key_salt = secrets.token_hex(8)
        self.api_calls = 0

    def entities(self) -> Sequence[str]:
        return [ENTITY]

    # -- transport ----------------------------------------------------------------------
    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = dict(kwargs.pop("headers", {}) or {})
        headers["Authorization"] = f"Bearer {self._key}"
        try:
            self.api_calls += 1
            return self.client.request(method, path, headers=headers, **kwargs)
        except httpx.TransportError as exc:
            raise transport_error(SYSTEM, exc) from None

    def _renew_key(self) -> None:
        """Re-read the key (the operator's rotation lands in the environment)."""
        provider = self.settings.api_key_provider
        fresh = provider() if provider else ""
        if fresh:
            register_secret(fresh)
            self._key = fresh

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        def attempt() -> httpx.Response:
            response = self._send(method, path, **kwargs)
            if response.status_code == 401 and _error_code(response) == "api_key_expired":
                self._renew_key()  # then one more try: an expired key is not a bad key
                response = self._send(method, path, **kwargs)
            if response.status_code == 401:
                raise AuthError(
                    SYSTEM,
                    f"{method} {path} answered 401 {_error_code(response)}: "
                    f"{redact(response.text[:300])}. Check WMS_API_KEY.",
                    status=401,
                )
            if response.status_code == 409 and (
                _error_code(response) == "idempotency_request_in_progress"
            ):
                raise TransientError(
                    SYSTEM,
                    f"{method} {path}: the first attempt of this write is still running",
                    status=409,
                    retry_after=parse_retry_after(response.headers.get("retry-after")),
                )
            raise_for_status(SYSTEM, response)
            return response

        return call_with_retry(SYSTEM, attempt, self.settings.retry)

    # -- reads --------------------------------------------------------------------------
    def _pages(self, params: dict[str, Any]) -> Iterator[list[NativeRecord]]:
        """Every page of a listing, following ``next_cursor`` with the same filters."""
        query = {"limit": self.settings.page_limit, **params}
        while True:
            payload = self._request("GET", ALLOCATIONS, params=query).json()
            yield list(payload.get("data") or [])
            cursor = payload.get("next_cursor")
            if not cursor:
                return
            query = {**query, "cursor": cursor}

    def read_changes(self, entity: str, cursor: str | None) -> Iterator[Batch]:
        """Allocations changed after ``cursor``, oldest first, one batch per page. The read
        starts the overlap before the cursor's instant; a batch's cursor never moves back,
        so while the overlap is re-read it stays where it was."""
        _check_entity(entity)
        stored = _decode_cursor(cursor)
        overlap = timedelta(seconds=self.settings.cursor_overlap_seconds)
        params: dict[str, Any] = {}
        if stored is not None:
            # a cursor near year 1 overflows: then the read starts at the beginning
            with contextlib.suppress(OverflowError):
                params["updated_since"] = (stored[0] - overlap).isoformat()
        for records in self._pages(params):
            if stored is not None and not overlap:  # no re-read: only what is after it
                records = [r for r in records if _order_key(r) > stored]
            if not records:
                continue
            last = _order_key(records[-1])
            if stored is None or last > stored:
                yield Batch(records, _encode_cursor(records[-1]))
            else:  # still re-reading the overlap: the cursor stays where it was
                yield Batch(records, cursor)

    def read_snapshot(self, entity: str, window: Window | None = None) -> Iterator[Batch]:
        _check_entity(entity)
        params: dict[str, Any] = {}
        end = window.end.astimezone(UTC) if window and window.end else None
        if window and window.start:
            params["updated_since"] = window.start.astimezone(UTC).isoformat()
        for records in self._pages(params):
            if end is not None:
                inside = [r for r in records if _instant(str(r["updated_at"])) < end]
                if inside:
                    yield Batch(inside)
                if len(inside) < len(records):
                    return  # ordered by updated_at: the rest is past the window
            elif records:
                yield Batch(records)

    def read_by_keys(self, entity: str, keys: Sequence[str]) -> Iterator[Batch]:
        """Allocations by the hub's key (``external_ref``), in chunks the URL can carry."""
        _check_entity(entity)
        step = self.settings.keys_per_query
        unique = list(dict.fromkeys(keys))
        for i in range(0, len(unique), step):
            refs = ",".join(unique[i : i + step])
            for records in self._pages({"external_ref": refs}):
                if records:
                    yield Batch(records)

    # -- writes -------------------------------------------------------------------------
    def write_batch(self, entity: str, records: Iterable[NativeRecord]) -> list[WriteResult]:
        """Upsert by ``external_ref``; one result per record, in input order."""
        _check_entity(entity)
        rows = [_writable(r) for r in records]
        out: list[WriteResult] = []
        for i in range(0, len(rows), self.settings.batch_limit):
            out.extend(self._write_chunk(rows[i : i + self.settings.batch_limit]))
        return out

    def idempotency_key(self, body: Mapping[str, Any]) -> str:
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
        digest = hashlib.sha256(f"{self._key_salt}\n{canonical}".encode()).hexdigest()
        return f"hub-wms-{digest[:48]}"

    def _write_chunk(self, chunk: list[NativeRecord]) -> list[WriteResult]:
        body = {"records": chunk}
        response = self._request(
            "POST",
            BATCH_UPSERT,
            content=json.dumps(body, separators=(",", ":"), default=str).encode(),
            headers={
                "Content-Type": "application/json",
                "Idempotency-Key": self.idempotency_key(body),
            },
        )
        answers = {int(a.get("index", -1)): a for a in response.json().get("results", [])}
        out = []
        for index, record in enumerate(chunk):
            answer = answers.get(index, {})
            key = str(record.get("external_ref") or "")
            outcome = _OUTCOMES.get(str(answer.get("status")))
            if outcome is not None:
                out.append(WriteResult(key, outcome, external_id=answer.get("id")))
                continue
            error = answer.get("error") or {}
            details = "; ".join(
                f"{d.get('field')}: {d.get('message')}" for d in error.get("details") or []
            )
            message = str(error.get("message") or "no result for this record")
            out.append(
                WriteResult(
                    key,
                    Outcome.REJECTED,
                    error=f"{message} ({details})" if details else message,
                    error_code=str(error.get("code") or "no_result"),
                )
            )
        return out

    # -- health -------------------------------------------------------------------------
    def health(self) -> Health:
        started = time.monotonic()
        try:
            self._request("GET", ALLOCATIONS, params={"limit": 1})
        except ConnectorError as exc:
            return Health(SYSTEM, False, str(exc))
        return Health(SYSTEM, True, "ok", (time.monotonic() - started) * 1000)

    def close(self) -> None:
        self.client.close()


def _check_entity(entity: str) -> None:
    if entity != ENTITY:
        raise ValueError(f"the WMS holds {ENTITY!r} records, not {entity!r}")


def _writable(record: NativeRecord) -> NativeRecord:
    return {k: v for k, v in record.items() if k not in READ_ONLY}


def _error_code(response: httpx.Response) -> str:
    try:
        return str(response.json().get("error", {}).get("code", ""))
    except (ValueError, AttributeError):
        return ""


def _instant(stamp: str) -> datetime:
    moment = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def key_order(key: Any) -> tuple[int, int | str]:
    """An id as the list orders it: a numeric id as a number, before ids with letters."""
    text = str(key)
    return (0, int(text)) if text.isdigit() else (1, text)


Position = tuple[datetime, tuple[int, int | str]]


def _order_key(record: NativeRecord) -> Position:
    return _instant(str(record["updated_at"])).astimezone(UTC), key_order(record["id"])


def _encode_cursor(record: NativeRecord) -> str:
    stamp = _instant(str(record["updated_at"])).astimezone(UTC)
    return json.dumps(
        {"updated_at": stamp.isoformat(), "id": str(record["id"])}, separators=(",", ":")
    )


def _decode_cursor(cursor: str | None) -> Position | None:
    """(instant, id order) of a stored cursor; one stored before kept the stamp as the
    WMS wrote it (``...Z``), which reads the same."""
    if not cursor:
        return None
    data = json.loads(cursor)
    return _instant(str(data["updated_at"])).astimezone(UTC), key_order(data["id"])


def from_env(env: Mapping[str, str], objects: MappedObjects | None = None) -> WmsConnector:
    """Built by the registry from the variables :class:`WmsSettings` declares. The key is
    re-read from ``env`` when the WMS says it expired (``env`` may be ``os.environ``)."""
    key_variable = env_names(WmsSettings)["api_key"]
    return WmsConnector(
        read_settings(WmsSettings, env, api_key_provider=lambda: env.get(key_variable, ""))
    )
