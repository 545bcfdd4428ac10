"""The Starlette application: API-key auth, the allocation and stock routes, idempotent
writes, and every error rendered in the one WMS error shape (docs/sandbox-wms.md)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import secrets
from collections.abc import Callable
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sandbox.faults import ASGIApp, FaultInjectionMiddleware, FaultState, admin_routes
from sandbox.store import DocumentStore
from sandbox.wms.errors import FieldIssue, WmsError, error_body, fault_error_body
from sandbox.wms.idempotency import IdempotencyKeys, fingerprint
from sandbox.wms.model import STATUSES, normalise_ts
from sandbox.wms.repository import Filters, Key, Repository
from sandbox.wms.settings import WmsSettings

API = "/v1"
#: (status, JSON payload, extra headers) of a handled request.
Answer = tuple[int, Any, dict[str, str]]


def _json(status: int, payload: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(
        json.dumps(payload, separators=(",", ":")).encode(),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


def _error(err: WmsError) -> Response:
    return Response(
        error_body(err), status_code=err.status, media_type="application/json", headers=err.headers
    )


def _etag(doc: dict[str, Any]) -> dict[str, str]:
    return {"etag": f'W/"{doc["version"]}"'}


def _if_match(request: Request) -> int | None:
    value = request.headers.get("if-match")
    if value is None:
        return None
    text = value.strip().removeprefix("W/").strip('"')
    if not text.isdigit():
        raise WmsError(400, "invalid_if_match", f'If-Match must be an ETag like W/"3", not {value}')
    return int(text)


def _csv(request: Request, name: str) -> list[str]:
    return [v.strip() for v in request.query_params.get(name, "").split(",") if v.strip()]


class WmsEmulator:
    def __init__(self, store: DocumentStore, faults: FaultState, settings: WmsSettings) -> None:
        self.settings = settings
        self.faults = faults
        self.repo = Repository(store, faults)
        self.keys = IdempotencyKeys(store, settings.idempotency_ttl_seconds)
        self._epoch = faults.token_epoch

    # -- plumbing ------------------------------------------------------------------------
    def _authenticate(self, request: Request) -> None:
        """``Authorization: Bearer <API key>``. A ``token_expiry`` fault makes the next
        request answer 401 ``api_key_expired`` (once per expiry, see the docs)."""
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise WmsError(
                401,
                "unauthenticated",
                "no API key: send the header Authorization: Bearer <API key>",
                headers={"www-authenticate": 'Bearer realm="wms"'},
            )
        if not secrets.compare_digest(token.strip().encode(), self.settings.api_key.encode()):
            raise WmsError(
                401,
                "invalid_api_key",
                "the API key is not valid",
                headers={"www-authenticate": 'Bearer realm="wms", error="invalid_token"'},
            )
        epoch = self.faults.token_epoch
        if epoch != self._epoch:
            self._epoch = epoch
            raise WmsError(
                401,
                "api_key_expired",
                "the API key has expired; use the rotated key",
                headers={
                    "www-authenticate": 'Bearer realm="wms", error="invalid_token", '
                    'error_description="The API key has expired"'
                },
            )

    async def _read(self, request: Request, handler: Callable[[Request], Answer]) -> Response:
        try:
            self._authenticate(request)
            self.repo.refresh()
            with self.repo.lock:
                status, payload, headers = handler(request)
        except WmsError as exc:
            return _error(exc)
        return _json(status, payload, headers)

    async def _write(self, request: Request, handler: Callable[[Request, Any], Answer]) -> Response:
        """Authenticate, parse, honour Idempotency-Key, run ``handler`` under the lock."""
        try:
            self._authenticate(request)
            raw = await request.body()
            key = request.headers.get("idempotency-key")
            request_fp = fingerprint(request.method, request.url.path, raw)
            if key is not None:
                stored = self.keys.begin(key, request_fp)
                if stored is not None:
                    return Response(
                        stored.body,
                        status_code=stored.status,
                        media_type="application/json",
                        headers={**stored.headers, "idempotent-replayed": "true"},
                    )
        except WmsError as exc:
            return _error(exc)
        try:
            try:
                body = json.loads(raw) if raw else None
            except ValueError as exc:
                raise WmsError(400, "invalid_json", f"the body is not JSON: {exc}") from None
            if body is None:
                raise WmsError(400, "invalid_json", "a JSON body is required")
            self.repo.refresh()
            with self.repo.lock:
                status, payload, headers = handler(request, body)
            response = _json(status, payload, headers)
        except WmsError as exc:
            response = _error(exc)
        except Exception:
            if key is not None:
                self.keys.release(key)
            raise
        if key is not None:
            self.keys.finish(
                key,
                request_fp,
                response.status_code,
                bytes(response.body),
                {k: v for k, v in response.headers.items() if k in ("etag", "wms-upsert-result")},
            )
        return response

    # -- allocations ---------------------------------------------------------------------
    async def list_allocations(self, request: Request) -> Response:
        return await self._read(request, self._list)

    def _list(self, request: Request) -> Answer:
        issues: list[FieldIssue] = []
        limit = self.settings.page_limit_default
        raw_limit = request.query_params.get("limit")
        if raw_limit is not None:
            if raw_limit.isdigit() and 1 <= int(raw_limit) <= self.settings.page_limit_max:
                limit = int(raw_limit)
            else:
                issues.append(
                    FieldIssue("limit", "invalid", f"must be 1..{self.settings.page_limit_max}")
                )
        since = None
        if request.query_params.get("updated_since"):
            try:
                since = normalise_ts(request.query_params["updated_since"])
            except ValueError as exc:
                issues.append(
                    FieldIssue("updated_since", "invalid", f"ISO 8601 with an offset: {exc}")
                )
        statuses = _csv(request, "status")
        bad = [s for s in statuses if s not in STATUSES]
        if bad:
            issues.append(FieldIssue("status", "invalid", f"unknown status {', '.join(bad)}"))
        refs = _csv(request, "external_ref")
        if len(refs) > self.settings.ref_filter_max:
            issues.append(
                FieldIssue(
                    "external_ref", "too_many", f"at most {self.settings.ref_filter_max} values"
                )
            )
        if issues:
            raise WmsError(422, "validation_failed", "invalid query parameters", issues)
        filters = Filters(
            since=since,
            statuses=frozenset(statuses),
            refs=tuple(refs),
            skus=frozenset(_csv(request, "sku")),
            locations=frozenset(_csv(request, "location")),
        )
        after = _decode_cursor(request.query_params.get("cursor"), filters)
        page = self.repo.page(filters, after, limit)
        next_cursor = _encode_cursor(page.last, filters) if page.has_more and page.last else None
        return 200, {"data": page.docs, "has_more": page.has_more, "next_cursor": next_cursor}, {}

    async def get_allocation(self, request: Request) -> Response:
        def handler(req: Request) -> Answer:
            doc = self.repo.get(req.path_params["id"])
            if doc is None:
                raise WmsError(404, "not_found", f"no allocation {req.path_params['id']}")
            return 200, doc, _etag(doc)

        return await self._read(request, handler)

    async def put_allocation(self, request: Request) -> Response:
        def handler(req: Request, body: Any) -> Answer:
            uow = self.repo.unit_of_work()
            outcome, doc = uow.upsert(req.path_params["external_ref"], body, _if_match(req))
            uow.commit()
            status = 201 if outcome == "created" else 200
            return status, doc, {**_etag(doc), "wms-upsert-result": outcome}

        return await self._write(request, handler)

    async def patch_allocation(self, request: Request) -> Response:
        def handler(req: Request, body: Any) -> Answer:
            uow = self.repo.unit_of_work()
            outcome, doc = uow.patch(req.path_params["id"], body, _if_match(req))
            uow.commit()
            return 200, doc, {**_etag(doc), "wms-upsert-result": outcome}

        return await self._write(request, handler)

    async def batch_upsert(self, request: Request) -> Response:
        return await self._write(request, self._batch)

    def _batch(self, _: Request, body: Any) -> Answer:
        records = body.get("records") if isinstance(body, dict) else None
        if not isinstance(records, list) or not records:
            raise WmsError(
                422,
                "validation_failed",
                'the body must be {"records": [...]} with at least one record',
                [FieldIssue("records", "required", "a non-empty list")],
            )
        if len(records) > self.settings.batch_max:
            raise WmsError(
                413,
                "batch_too_large",
                f"{len(records)} records; a batch takes at most {self.settings.batch_max}",
                [FieldIssue("records", "too_many", f"at most {self.settings.batch_max}")],
            )
        uow = self.repo.unit_of_work()
        results: list[dict[str, Any]] = []
        summary = dict.fromkeys(("created", "updated", "unchanged", "error"), 0)
        for index, record in enumerate(records):
            ref = record.get("external_ref") if isinstance(record, dict) else None
            result: dict[str, Any] = {"index": index, "external_ref": ref}
            try:
                if not isinstance(ref, str) or not ref.strip():
                    raise WmsError(
                        422,
                        "validation_failed",
                        "external_ref is required in a batch record",
                        [FieldIssue("external_ref", "required", "external_ref is required")],
                    )
                outcome, doc = uow.upsert(ref, record)
                result |= {"status": outcome, "id": doc["id"], "version": doc["version"]}
            except WmsError as exc:
                outcome = "error"
                result |= {"status": "error", "error": exc.as_json()}
            summary[outcome] += 1
            results.append(result)
        uow.commit()
        return 200, {"results": results, "summary": summary}, {}

    # -- stock ---------------------------------------------------------------------------
    async def list_stock(self, request: Request) -> Response:
        def handler(req: Request) -> Answer:
            rows = self.repo.stock(frozenset(_csv(req, "sku")), frozenset(_csv(req, "location")))
            return 200, {"data": rows}, {}

        return await self._read(request, handler)

    async def put_stock(self, request: Request) -> Response:
        def handler(req: Request, body: Any) -> Answer:
            sku, location = req.path_params["sku"], req.path_params["location"]
            on_hand = body.get("on_hand") if isinstance(body, dict) else None
            issues = []
            if isinstance(on_hand, bool) or not isinstance(on_hand, int) or on_hand < 0:
                issues.append(FieldIssue("on_hand", "invalid", "a whole number >= 0"))
            if len(location) != 4 or not location.isalnum() or not location.isupper():
                issues.append(FieldIssue("location", "invalid", "a 4-character warehouse code"))
            if issues:
                raise WmsError(422, "validation_failed", "invalid stock count", issues)
            assert isinstance(on_hand, int)  # checked above; narrows the type
            self.repo.set_on_hand(sku, location, on_hand)
            (row,) = self.repo.stock(frozenset({sku}), frozenset({location}))
            return 200, row, {}

        return await self._write(request, handler)


# -- cursors ---------------------------------------------------------------------------------
def _filters_hash(filters: Filters) -> str:
    text = json.dumps(
        [
            filters.since,
            sorted(filters.statuses),
            sorted(filters.refs),
            sorted(filters.skus),
            sorted(filters.locations),
        ]
    )
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _encode_cursor(last: Key, filters: Filters) -> str:
    """Opaque to clients: the position (updated_at, id) and which filters it belongs to."""
    raw = json.dumps({"k": list(last), "f": _filters_hash(filters)}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str | None, filters: Filters) -> Key | None:
    if not cursor:
        return None
    try:
        data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        updated_at, allocation_id = data["k"]
        owner = data["f"]
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise WmsError(400, "invalid_cursor", "the cursor is not one this API issued") from None
    if owner != _filters_hash(filters):
        raise WmsError(
            400,
            "invalid_cursor",
            "the cursor was issued for other filters; repeat the original query's filters",
        )
    return str(updated_at), str(allocation_id)


# -- the app ---------------------------------------------------------------------------------
def create_app(store: DocumentStore, faults: FaultState, settings: WmsSettings) -> ASGIApp:
    """The WMS REST API on ``/v1``, the sandbox admin routes, fault injection around it."""
    wms = WmsEmulator(store, faults, settings)

    async def not_found(_: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 404
        code = {404: "not_found", 405: "method_not_allowed"}.get(status, "bad_request")
        detail = exc.detail if isinstance(exc, HTTPException) else "not found"
        return _error(WmsError(status, code, str(detail)))

    app = Starlette(
        routes=[
            Route(f"{API}/allocations", wms.list_allocations, methods=["GET"]),
            Route(f"{API}/allocations:batchUpsert", wms.batch_upsert, methods=["POST"]),
            Route(f"{API}/allocations/{{id}}", wms.get_allocation, methods=["GET"]),
            Route(f"{API}/allocations/{{id}}", wms.patch_allocation, methods=["PATCH"]),
            Route(f"{API}/allocations/{{external_ref}}", wms.put_allocation, methods=["PUT"]),
            Route(f"{API}/stock", wms.list_stock, methods=["GET"]),
            Route(f"{API}/stock/{{sku}}/{{location}}", wms.put_stock, methods=["PUT"]),
            *admin_routes(faults),
        ],
        exception_handlers={404: not_found, 405: not_found},
    )
    app.state.wms = wms
    return FaultInjectionMiddleware(app, faults, fault_error_body)
