"""The Starlette application: the OAuth token endpoint, ``/services/data`` routing with
session checks, the daily API budget and the ``Sforce-Limit-Info`` header, and the
sandbox admin routes; fault injection wraps it all with Salesforce-shaped error bodies."""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl, unquote

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from sandbox.faults import FaultInjectionMiddleware, FaultState, admin_routes
from sandbox.salesforce import ids
from sandbox.salesforce.auth import ApiBudget, OAuthError, TokenService
from sandbox.salesforce.bulk import BulkApi
from sandbox.salesforce.bulk_v1 import BulkV1Api, as_bulk_v1
from sandbox.salesforce.errors import ApiError, fault_error_body, not_found, retired_version
from sandbox.salesforce.pubsub_events import ChangeEventBus, change_origin, origin
from sandbox.salesforce.pubsub_events import admin_routes as pubsub_admin_routes
from sandbox.salesforce.repository import Repository, UnitOfWork
from sandbox.salesforce.rest import JSON, Call, Reply, RestApi, versions
from sandbox.salesforce.schema import org_schema
from sandbox.salesforce.seed import convert_addresses, seed_records
from sandbox.salesforce.settings import SalesforceSettings
from sandbox.store import DocumentStore

_VERSION = re.compile(r"^v(\d{1,3}\.\d)$")


class SalesforceEmulator:
    def __init__(
        self, store: DocumentStore, faults: FaultState, settings: SalesforceSettings
    ) -> None:
        self.settings = settings
        self.store = store
        self.tokens = TokenService(store, faults, settings)
        self.budget = ApiBudget(settings.daily_api_limit)
        self.schema = org_schema(
            settings.multi_currency, settings.state_country_picklists, settings.default_currency
        )
        # Accounts seeded without the org's settings, put in its address shape
        convert_addresses(store, self.schema)
        self.repo = Repository(store, faults, settings.user_id)
        # Change Data Capture: every commit publishes change events (Pub/Sub API emulator)
        self.events = ChangeEventBus(store, self.schema, settings)
        self.repo.listeners.append(self.events.on_commit)
        self.rest = RestApi(store, faults, settings, self.repo, self.limits, self.schema)
        self.bulk = BulkApi(store, self.repo, settings, self.schema)
        self.bulk_v1 = BulkV1Api(store, self.repo, settings, self.schema)
        # the one Organization record, as the settings describe the org
        organization = {
            "Id": settings.org_id,
            "Name": "Hub Sandbox Org",
            "DefaultCurrencyIsoCode": settings.default_currency,
            "InstanceName": "EMU1",
            "IsSandbox": True,
        }
        seed_records(store, "Organization", [organization], self.schema)

    def limits(self) -> dict[str, Any]:
        daily = self.settings.daily_api_limit
        return {
            "DailyApiRequests": {"Max": daily, "Remaining": self.budget.remaining},
            "DailyBulkV2QueryJobs": {"Max": 10_000, "Remaining": 10_000},
            "DailyBulkV2QueryFileStorageMB": {"Max": 976_562, "Remaining": 976_562},
            "DataStorageMB": {"Max": 1_024, "Remaining": 1_024},
        }

    # -- OAuth -----------------------------------------------------------------------------
    async def token(self, request: Request) -> Response:
        # urlencoded form parsed by hand: python-multipart is not a dependency
        body = (await request.body()).decode("utf-8", "replace")
        form = dict(parse_qsl(body, keep_blank_values=True))
        form |= {k: v for k, v in request.query_params.items() if k not in form}
        basic = _basic_auth(request.headers.get("authorization"))
        login_url = str(request.base_url).rstrip("/")
        try:
            answer = self.tokens.grant(form, basic, login_url)
        except OAuthError as exc:
            return JSONResponse(
                {"error": exc.error, "error_description": exc.description},
                status_code=exc.status,
            )
        return JSONResponse(answer, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})

    async def identity(self, request: Request) -> Response:
        try:
            self.tokens.check(request.headers.get("authorization"))
        except ApiError as exc:
            return exc.response()
        if request.path_params["org"] != self.settings.org_id:
            return not_found().response()
        return JSONResponse(
            {
                "id": str(request.url),
                "organization_id": self.settings.org_id,
                "user_id": self.settings.user_id,
                "username": self.settings.username,
                "active": True,
            }
        )

    # -- REST ------------------------------------------------------------------------------
    async def versions(self, _: Request) -> Response:
        return JSONResponse(versions(self.settings.api_version, self.settings.min_api_version))

    async def api(self, request: Request) -> Response:
        extra: dict[str, str] = {}
        try:
            version = self._version(request.path_params["version"])
            session = self.tokens.check(request.headers.get("authorization"))
            self.budget.charge()
            extra["Sforce-Limit-Info"] = self.budget.header()
            path = request.path_params.get("path", "").strip("/")
            parts = path.split("/") if path else []  # already percent-decoded
            body = await request.body()
            call = Call(request.method, parts, dict(request.query_params), body, version)
            client = _call_client(request.headers.get("sforce-call-options")) or session.client_id
            api = "bulkapi" if parts and parts[0] == "jobs" else "rest"
            reply = await run_in_threadpool(self._dispatch, call, origin(api, version, client))
        except ApiError as exc:
            return exc.response(extra)
        return _render(reply, extra)

    def _dispatch(self, call: Call, change: str = "") -> Reply:
        token = change_origin.set(change)
        try:
            if call.parts and call.parts[0] == "jobs":
                return self.bulk.handle(call)
            return self.rest.handle(call)
        finally:
            change_origin.reset(token)

    async def async_api(self, request: Request) -> Response:
        """Bulk API 1.0 (``/services/async/<version>/...``): the session comes in
        ``X-SFDC-Session``, errors go out in Bulk API 1.0's shape; charged like a REST call."""
        try:
            version = self._version(request.path_params["version"])
            token = (request.headers.get("x-sfdc-session") or "").strip()
            session = self.tokens.check(f"Bearer {token}" if token else None)
            self.budget.charge()
            path = request.path_params.get("path", "").strip("/")
            body = await request.body()
            parts = path.split("/") if path else []
            call = Call(request.method, parts, dict(request.query_params), body, version)
            client = _call_client(request.headers.get("sforce-call-options")) or session.client_id
            reply = await run_in_threadpool(
                self._dispatch_v1, call, origin("bulkapi", version, client)
            )
        except ApiError as exc:
            return as_bulk_v1(exc).response()
        return _render(reply, {})

    def _dispatch_v1(self, call: Call, change: str) -> Reply:
        token = change_origin.set(change)
        try:
            return self.bulk_v1.handle(call)
        finally:
            change_origin.reset(token)

    def undelete(self, entity: str, record_id: str) -> None:
        """Restore a deleted record from the recycle bin (an UNDELETE change event); for
        the Pub/Sub admin route - the emulated REST API has no undelete call."""
        obj = self.schema.sobject(entity)
        full = ids.normalize(record_id)
        doc = self.repo.get(obj, full) if obj is not None and full else None
        if obj is None or full is None or doc is None or not doc.get("IsDeleted"):
            raise LookupError(f"no deleted {entity} {record_id}")
        with self.repo.lock:
            uow = UnitOfWork(self.repo)
            uow._queue(obj, full, {**doc, "IsDeleted": False})
            token = change_origin.set(origin("soap", self.settings.api_version, ""))
            try:
                uow.commit()
            finally:
                change_origin.reset(token)

    def _version(self, raw: str) -> str:
        match = _VERSION.match("v" + raw)
        if not match:
            raise not_found()
        number = float(match.group(1))
        if number < float(self.settings.min_api_version):
            # a retired version: REST API answers 410 GONE (Salesforce's API End-of-Life
            # policy), not 404, whatever the resource
            raise retired_version(match.group(1), self.settings.min_api_version)
        if number > float(self.settings.api_version):
            raise not_found()
        return match.group(1)


def _call_client(header: str | None) -> str:
    """The ``client`` of a ``Sforce-Call-Options`` header (``client=name, ...``)."""
    for part in (header or "").split(","):
        key, _, value = part.strip().partition("=")
        if key.strip().lower() == "client":
            return value.strip()
    return ""


def _basic_auth(header: str | None) -> tuple[str, str] | None:
    if not header or not header.lower().startswith("basic "):
        return None
    try:
        user, _, password = base64.b64decode(header[6:].strip()).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return unquote(user), unquote(password)


def _render(reply: Reply, extra: dict[str, str]) -> Response:
    headers = {**reply.headers, **extra}
    if reply.status == 204 or reply.body is None:
        return Response(status_code=reply.status, headers=headers)
    if isinstance(reply.body, Iterator):
        return StreamingResponse(
            reply.body, status_code=reply.status, headers=headers, media_type=reply.media_type
        )
    if isinstance(reply.body, (bytes, str)):
        return Response(
            reply.body, status_code=reply.status, headers=headers, media_type=reply.media_type
        )
    content = json.dumps(reply.body, separators=(",", ":"), ensure_ascii=False).encode()
    return Response(content, status_code=reply.status, headers=headers, media_type=JSON)


def create_app(
    store: DocumentStore, faults: FaultState, settings: SalesforceSettings | None = None
) -> Any:
    """The Salesforce emulator as an ASGI app (fault injection included)."""
    emulator = SalesforceEmulator(store, faults, settings or SalesforceSettings())
    methods = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]
    routes = [
        Route("/services/oauth2/token", emulator.token, methods=["POST"]),
        Route("/id/{org}/{user}", emulator.identity, methods=["GET"]),
        Route("/services/data", emulator.versions, methods=["GET"]),
        Route("/services/data/", emulator.versions, methods=["GET"]),
        Route("/services/data/v{version}/{path:path}", emulator.api, methods=methods),
        Route("/services/data/v{version}", emulator.api, methods=methods),
        Route("/services/async/{version}/{path:path}", emulator.async_api, methods=methods),
        *admin_routes(faults),
        *pubsub_admin_routes(emulator.events, emulator.undelete),
    ]
    app = Starlette(routes=routes)
    app.state.emulator = emulator
    return FaultInjectionMiddleware(app, faults, fault_error_body)
