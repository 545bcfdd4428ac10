"""The Starlette application: routing under ``/sap/opu/odata/sap/<SERVICE>/``, logon,
CSRF, $metadata, $batch, content negotiation (Atom unless JSON is asked for, as SAP
Gateway answers) and translation of :class:`SapError` into SAP's error JSON or XML."""

from __future__ import annotations

import json
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sandbox.faults import FaultInjectionMiddleware, FaultState, admin_routes
from sandbox.sap.atom import (
    ATOM,
    JSON,
    SERVICE_TYPE,
    atom_result,
    error_xml,
    negotiate,
    service_document,
)
from sandbox.sap.auth import AuthError, SessionManager
from sandbox.sap.batch import parse_batch, run_batch
from sandbox.sap.edm import Service
from sandbox.sap.errors import NOT_ALLOWED, SapError, error_payload, fault_error_body
from sandbox.sap.events import EventEmitter, event_routes
from sandbox.sap.handlers import WRITE_METHODS, Dispatcher, Op, Result, json_result
from sandbox.sap.metadata import metadata_xml
from sandbox.sap.repository import Repository, UnitOfWork
from sandbox.sap.services import services_for
from sandbox.sap.settings import SapSettings
from sandbox.sap.stats import CallCounter, stats_routes
from sandbox.store import DocumentStore

PREFIX = "/sap/opu/odata/sap"


class SapEmulator:
    def __init__(self, store: DocumentStore, faults: FaultState, settings: SapSettings) -> None:
        self.settings = settings
        self.sessions = SessionManager(settings, faults)
        self.repo = Repository(store, settings.code_lists, settings.check_references)
        self.dispatcher = Dispatcher(self.repo, faults, settings)
        self.counter = CallCounter()
        self.services = services_for(settings.hub_id_field)
        self.events = EventEmitter(settings.events, settings.system_id)
        self.repo.listeners.append(self.events.publish)

    async def endpoint(self, request: Request) -> Response:
        name = request.path_params["service"]
        svc = self.services.get(name.upper())
        if svc is None:
            return self._error(
                SapError(
                    404,
                    "/IWFND/MED/170",
                    f"No service found for namespace '/SAP/', name '{name}', version '0001'",
                ),
                None,
                fmt=_error_format(request),
            )
        try:
            user, new_session = self.sessions.authenticate(
                {k.lower(): v for k, v in request.headers.items()},
                dict(request.cookies),
                request.query_params.get("sap-client") or request.headers.get("sap-client"),
            )
        except AuthError as exc:
            return Response(
                f"<html><head><title>Logon Error Message</title></head><body>{exc.message}"
                "</body></html>",
                status_code=exc.status,
                media_type="text/html",
                headers=exc.headers,
            )
        response = await self._dispatch(request, svc, user, new_session)
        if new_session:
            response.set_cookie(self.sessions.session_cookie, new_session, path="/", httponly=True)
            response.set_cookie("sap-usercontext", f"sap-client={self.settings.client}", path="/")
        return response

    async def _dispatch(
        self, request: Request, svc: Service, user: str, new_session: str | None
    ) -> Response:
        path = request.path_params.get("path", "")
        root = self._root(request, svc)
        method = request.method.upper()
        headers = {k.lower(): v for k, v in request.headers.items()}
        extra: dict[str, str] = {}
        session_id = new_session or request.cookies.get(self.sessions.session_cookie)
        fmt = _error_format(request)  # until $format is known to be valid
        if headers.get("x-csrf-token", "").lower() == "fetch" and method in ("GET", "HEAD"):
            token = self.sessions.fetch_token(user, session_id)
            extra["x-csrf-token"] = token
        if method in WRITE_METHODS and not self.sessions.check_token(
            user, headers.get("x-csrf-token")
        ):
            return Response(
                "CSRF token validation failed",
                status_code=403,
                media_type="text/plain",
                headers={"x-csrf-token": "Required"},
            )
        try:
            fmt = negotiate(request.query_params.get("$format"), headers.get("accept"))
            if path in ("", "/"):
                if method not in ("GET", "HEAD"):
                    raise SapError(405, NOT_ALLOWED, f"Method {method} not allowed")
                result = _service_document(svc, root, fmt)
            elif path == "$metadata":
                result = Result(
                    200,
                    {"content-type": "application/xml", "dataserviceversion": "2.0"},
                    metadata_xml(svc, root, self.settings.hub_id_field),
                )
            elif path == "$batch":
                if method != "POST":
                    raise SapError(405, NOT_ALLOWED, "Use POST for $batch")
                result = self._batch(
                    svc, await request.body(), headers.get("content-type", ""), root
                )
            else:
                op = Op(method, path, request.url.query, headers, await request.body())
                result = self.dispatcher.handle(svc, op, root)
                if fmt == ATOM:
                    result = atom_result(svc, path, result, root)
        except SapError as exc:
            return self._error(exc, svc, extra, fmt)
        out_headers = {**result.headers, **extra}
        if method == "HEAD":
            return Response(b"", status_code=result.status, headers=out_headers)
        return Response(result.body, status_code=result.status, headers=out_headers)

    def _root(self, request: Request, svc: Service) -> str:
        base = str(request.base_url).rstrip("/")
        requested = request.path_params["service"]
        return f"{base}{PREFIX}/{requested if requested.upper() == svc.name else svc.name}/"

    def _batch(self, svc: Service, body: bytes, content_type: str, root: str) -> Result:
        parts = parse_batch(body, content_type)
        self.counter.batch_operations += sum(len(p.ops) if hasattr(p, "ops") else 1 for p in parts)

        def run(op: Op, uow: UnitOfWork | None = None) -> Result:
            fmt = negotiate(op.params().get("$format"), op.headers.get("accept"), batch_part=True)
            result = self.dispatcher.handle(svc, _relative(op, svc), root, uow)
            return atom_result(svc, op.path, result, root) if fmt == ATOM else result

        def run_op(op: Op) -> Result:
            try:
                return run(op)
            except SapError as exc:
                return _error_result(exc, svc, _part_error_format(op))

        def run_changeset(ops: list[Op]) -> list[Result] | Result:
            uow = UnitOfWork(self.repo)
            results = []
            with self.repo.lock:
                for op in ops:
                    try:
                        results.append(run(op, uow))
                    except SapError as exc:
                        return _error_result(exc, svc, _part_error_format(op))
                uow.commit()
            return results

        content_type_out, payload = run_batch(parts, run_op, run_changeset)
        return Result(202, {"content-type": content_type_out, "dataserviceversion": "2.0"}, payload)

    def _error(
        self,
        exc: SapError,
        svc: Service | None,
        extra: dict[str, str] | None = None,
        fmt: str = JSON,
    ) -> Response:
        result = _error_result(exc, svc, fmt)
        return Response(
            result.body, status_code=result.status, headers={**result.headers, **(extra or {})}
        )


def _relative(op: Op, svc: Service) -> Op:
    """Batch parts may address resources absolutely; make them service-relative."""
    marker = f"{PREFIX}/{svc.name}/"
    path = op.path
    index = path.upper().find(marker.upper())
    if index >= 0:
        op.path = path[index + len(marker) :]
    return op


def _error_result(exc: SapError, svc: Service | None, fmt: str = JSON) -> Result:
    """SAP's error body, as XML for a client that wants XML or Atom, else as JSON."""
    payload = error_payload(
        exc.code,
        exc.message,
        exc.details,
        svc.name if svc else "",
        svc.component if svc else "",
    )
    if fmt == ATOM:
        content_type, body = "application/xml", error_xml(payload)
    else:
        content_type, body = "application/json", json.dumps(payload).encode()
    headers = {"content-type": content_type, "dataserviceversion": "1.0", **exc.headers}
    return Result(exc.status, headers, body)


def _error_format(request: Request) -> str:
    """The format an error is answered in: the negotiated one, or - when ``$format``
    itself is the error - the one Accept asks for."""
    return _error_format_of(request.query_params.get("$format"), request.headers.get("accept"))


def _part_error_format(op: Op) -> str:
    """:func:`_error_format` for one part of a $batch."""
    return _error_format_of(op.params().get("$format"), op.headers.get("accept"), batch_part=True)


def _error_format_of(fmt: str | None, accept: str | None, *, batch_part: bool = False) -> str:
    try:
        return negotiate(fmt, accept, batch_part=batch_part)
    except SapError:
        return negotiate(None, accept, batch_part=batch_part)


def _service_document(svc: Service, root: str, fmt: str) -> Result:
    """The service document: AtomPub's ``<app:service>`` or JSON's list of entity sets."""
    if fmt == JSON:
        return json_result(200, {"d": {"EntitySets": list(svc.sets)}})
    headers = {"content-type": SERVICE_TYPE, "dataserviceversion": "1.0"}
    return Result(200, headers, service_document(svc, root))


def create_app(
    store: DocumentStore, faults: FaultState, settings: SapSettings | None = None
) -> Any:
    """The SAP emulator as an ASGI app (fault injection and call counting included)."""
    emulator = SapEmulator(store, faults, settings or SapSettings())
    methods = ["GET", "HEAD", "POST", "PUT", "PATCH", "MERGE", "DELETE"]

    routes = [
        Route(PREFIX + "/{service}/{path:path}", emulator.endpoint, methods=methods),
        Route(PREFIX + "/{service}", emulator.endpoint, methods=methods),
        *admin_routes(faults),
        *stats_routes(emulator.counter),
        *event_routes(emulator.events),
    ]
    app = Starlette(routes=routes)
    app.state.emulator = emulator
    return emulator.counter.wrap(FaultInjectionMiddleware(app, faults, fault_error_body))
