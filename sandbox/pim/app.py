"""The Starlette application: OAuth token endpoint, products (list with search and
pagination, get, create, PATCH one, PATCH a collection, delete), families and attributes
under ``/api/rest/v1``; every error in Akeneo's ``{"code", "message"}`` shape."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterator
from itertools import islice
from typing import Any
from urllib.parse import parse_qsl, urlencode

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sandbox.faults import FaultInjectionMiddleware, FaultState, admin_routes
from sandbox.pim.auth import TokenIssuer
from sandbox.pim.errors import JSON, PimError, fault_error_body
from sandbox.pim.products import Catalog
from sandbox.pim.search import parse_search
from sandbox.pim.settings import PimSettings
from sandbox.store import DocumentStore

API = "/api/rest/v1"
TOKEN_PATH = "/api/oauth/v1/token"  # noqa: S105 - a route, not a secret
COLLECTION = "application/vnd.akeneo.collection+json"

Handler = Callable[[Request], Awaitable[Response]]


class PimEmulator:
    def __init__(self, store: DocumentStore, faults: FaultState, settings: PimSettings) -> None:
        self.settings = settings
        self.tokens = TokenIssuer(settings, faults)
        self.catalog = Catalog(store, settings, faults)

    # -- plumbing ---------------------------------------------------------------------
    def route(self, handler: Handler, *, authenticated: bool = True) -> Handler:
        """Translate PimError into Akeneo's error JSON; check the bearer token first."""

        async def endpoint(request: Request) -> Response:
            try:
                if authenticated:
                    self.tokens.authenticate(request.headers.get("authorization"))
                return await handler(request)
            except PimError as exc:
                return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

        return endpoint

    # -- OAuth ------------------------------------------------------------------------
    async def token(self, request: Request) -> Response:
        raw = await request.body()
        content_type = request.headers.get("content-type", "")
        if content_type.startswith("application/x-www-form-urlencoded"):
            body: Any = dict(parse_qsl(raw.decode()))
        else:
            try:
                body = json.loads(raw or b"{}")
            except ValueError:
                raise PimError(400, "Invalid json message received") from None
        if not isinstance(body, dict):
            raise PimError(400, "Invalid json message received")
        answer = self.tokens.grant(request.headers.get("authorization"), body)
        return JSONResponse(answer, headers={"cache-control": "no-store"})

    # -- products ---------------------------------------------------------------------
    async def list_products(self, request: Request) -> Response:
        query = request.query_params
        limit = _positive_int(query.get("limit"), self.settings.page_limit_default, "limit")
        if limit > self.settings.page_limit_max:
            raise PimError(
                422, f"You cannot request more than {self.settings.page_limit_max} items."
            )
        pagination = query.get("pagination_type", "page")
        if pagination not in ("page", "search_after"):
            raise PimError(422, "Pagination type does not exist.")
        predicates = parse_search(query.get("search"))
        base = str(request.url.replace(query="")).rstrip("/")
        keep = {k: v for k, v in query.items() if k not in ("page", "search_after", "limit")}
        keep["limit"] = str(limit)

        def link(**params: Any) -> dict[str, str]:
            return {"href": f"{base}?{urlencode({**keep, **params})}"}

        if pagination == "search_after":
            after = query.get("search_after")
            found = list(islice(self.catalog.iter_products(predicates, after), limit + 1))
            items = found[:limit]
            links = {
                "self": {"href": str(request.url)},
                "first": link(),
            }
            if len(found) > limit:
                links["next"] = link(search_after=items[-1]["identifier"])
            return JSONResponse(
                {"_links": links, "_embedded": {"items": self._items(request, items)}}
            )
        page = _positive_int(query.get("page"), 1, "page")
        matching = self.catalog.iter_products(predicates)
        found = list(islice(matching, (page - 1) * limit, page * limit + 1))
        items = found[:limit]
        links = {"self": link(page=page), "first": link(page=1)}
        if page > 1:
            links["previous"] = link(page=page - 1)
        if len(found) > limit:
            links["next"] = link(page=page + 1)
        payload: dict[str, Any] = {"_links": links, "current_page": page}
        if query.get("with_count") == "true":
            payload["items_count"] = sum(1 for _ in self.catalog.iter_products(predicates))
        payload["_embedded"] = {"items": self._items(request, items)}
        return JSONResponse(payload)

    def _items(self, request: Request, docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        root = str(request.base_url).rstrip("/")
        return [
            {"_links": {"self": {"href": f"{root}{API}/products/{d['identifier']}"}}, **d}
            for d in docs
        ]

    async def get_product(self, request: Request) -> Response:
        identifier = request.path_params["identifier"]
        product = self.catalog.get(identifier)
        if product is None:
            raise PimError(404, f"Resource `{identifier}` does not exist.")
        return JSONResponse(product)

    async def patch_product(self, request: Request) -> Response:
        _require_json(request)
        identifier = request.path_params["identifier"]
        try:
            body = json.loads(await request.body())
        except ValueError:
            raise PimError(400, "Invalid json message received") from None
        status = self.catalog.upsert(identifier, body)
        location = f"{str(request.base_url).rstrip('/')}{API}/products/{identifier}"
        return Response(status_code=status, headers={"location": location})

    async def create_product(self, request: Request) -> Response:
        _require_json(request)
        try:
            body = json.loads(await request.body())
        except ValueError:
            raise PimError(400, "Invalid json message received") from None
        identifier = self.catalog.create(body)
        location = f"{str(request.base_url).rstrip('/')}{API}/products/{identifier}"
        return Response(status_code=201, headers={"location": location})

    async def delete_product(self, request: Request) -> Response:
        identifier = request.path_params["identifier"]
        if not self.catalog.delete(identifier):
            raise PimError(404, f"Resource `{identifier}` does not exist.")
        return Response(status_code=204)

    async def patch_collection(self, request: Request) -> Response:
        content_type = request.headers.get("content-type", "")
        if not content_type.startswith(COLLECTION):
            raise PimError(
                415,
                f"\u2018{content_type or 'none'}\u2019 in \u2018Content-Type\u2019 header is "
                f"not valid. Only \u2018{COLLECTION}\u2019 is allowed.",
            )
        lines = [line for line in (await request.body()).decode().splitlines() if line.strip()]
        limit = self.settings.collection_max_lines
        if len(lines) > limit:
            raise PimError(413, f"Too many resources to process, {limit} is the maximum allowed.")
        answers = "\n".join(json.dumps(a) for a in self._collection_lines(lines))
        return Response(answers, media_type=COLLECTION)

    def _collection_lines(self, lines: list[str]) -> Iterator[dict[str, Any]]:
        for number, line in enumerate(lines, start=1):
            try:
                body = json.loads(line)
            except ValueError:
                yield {
                    "line": number,
                    "status_code": 400,
                    "message": "Invalid json message received",
                }
                continue
            identifier = body.get("identifier") if isinstance(body, dict) else None
            if not isinstance(identifier, str):
                yield {"line": number, "status_code": 422, "message": "Identifier is missing."}
                continue
            answer: dict[str, Any] = {"line": number, "identifier": identifier}
            try:
                answer["status_code"] = self.catalog.upsert(identifier, body)
            except PimError as exc:
                body_out = exc.body()
                answer["status_code"] = exc.status
                answer["message"] = body_out["message"]
                if "errors" in body_out:
                    answer["errors"] = body_out["errors"]
                if "_links" in body_out:
                    answer["_links"] = body_out["_links"]
            yield answer

    # -- families ---------------------------------------------------------------------
    async def list_families(self, request: Request) -> Response:
        return self._listing(request, "families", list(self.catalog.families()))

    async def list_attributes(self, request: Request) -> Response:
        """Akeneo's attribute list: what a product's ``values`` may hold (the connector's
        native_fields reads it for ``hub systems check``)."""
        return self._listing(request, "attributes", self.catalog.attributes())

    def _listing(self, request: Request, what: str, every: list[dict[str, Any]]) -> Response:
        """One page of a code-keyed list (families, attributes) with Akeneo's page links."""
        query = request.query_params
        limit = _positive_int(query.get("limit"), self.settings.page_limit_default, "limit")
        if limit > self.settings.page_limit_max:
            raise PimError(
                422, f"You cannot request more than {self.settings.page_limit_max} items."
            )
        page = _positive_int(query.get("page"), 1, "page")
        base = str(request.url.replace(query="")).rstrip("/")
        found = every[(page - 1) * limit : page * limit + 1]
        links = {
            "self": {"href": f"{base}?{urlencode({'page': page, 'limit': limit})}"},
            "first": {"href": f"{base}?{urlencode({'page': 1, 'limit': limit})}"},
        }
        if page > 1:
            links["previous"] = {"href": f"{base}?{urlencode({'page': page - 1, 'limit': limit})}"}
        if len(found) > limit:
            links["next"] = {"href": f"{base}?{urlencode({'page': page + 1, 'limit': limit})}"}
        root = str(request.base_url).rstrip("/")
        items = [
            {"_links": {"self": {"href": f"{root}{API}/{what}/{f['code']}"}}, **f}
            for f in found[:limit]
        ]
        return JSONResponse({"_links": links, "current_page": page, "_embedded": {"items": items}})

    async def get_family(self, request: Request) -> Response:
        code = request.path_params["code"]
        family = self.catalog.family(code)
        if family is None:
            raise PimError(404, f'Family "{code}" does not exist.')
        return JSONResponse(family)

    async def root(self, request: Request) -> Response:
        """The API root lists the endpoints and, as on Akeneo, needs no token."""
        routes = {
            "pim_api_product_list": {"route": f"{API}/products", "methods": ["GET"]},
            "pim_api_product_partial_update_list": {
                "route": f"{API}/products",
                "methods": ["PATCH"],
            },
            "pim_api_product_create": {"route": f"{API}/products", "methods": ["POST"]},
            "pim_api_product_get": {"route": f"{API}/products/{{code}}", "methods": ["GET"]},
            "pim_api_product_delete": {
                "route": f"{API}/products/{{code}}",
                "methods": ["DELETE"],
            },
            "pim_api_product_partial_update": {
                "route": f"{API}/products/{{code}}",
                "methods": ["PATCH"],
            },
            "pim_api_family_list": {"route": f"{API}/families", "methods": ["GET"]},
            "pim_api_family_get": {"route": f"{API}/families/{{code}}", "methods": ["GET"]},
            "pim_api_attribute_list": {"route": f"{API}/attributes", "methods": ["GET"]},
        }
        return JSONResponse(
            {"host": str(request.base_url).rstrip("/"), "authentication": {}, "routes": routes}
        )


def _positive_int(raw: str | None, default: int, name: str) -> int:
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise PimError(422, f'"{raw}" is not a valid {name} number.')
    return value


def _require_json(request: Request) -> None:
    content_type = request.headers.get("content-type")
    if not content_type:
        raise PimError(
            415,
            "The \u2018Content-Type\u2019 header is missing. \u2018application/json\u2019 has "
            "to be specified as value.",
        )
    if not content_type.startswith(JSON):
        raise PimError(
            415,
            f"\u2018{content_type}\u2019 in \u2018Content-Type\u2019 header is not valid. "
            "Only \u2018application/json\u2019 is allowed.",
        )


def create_app(
    store: DocumentStore, faults: FaultState, settings: PimSettings | None = None
) -> Any:
    """The PIM emulator as an ASGI app (fault injection included)."""
    emulator = PimEmulator(store, faults, settings or PimSettings())
    r = emulator.route
    routes = [
        Route(TOKEN_PATH, r(emulator.token, authenticated=False), methods=["POST"]),
        Route(API, r(emulator.root, authenticated=False), methods=["GET"]),
        Route(f"{API}/products", r(emulator.list_products), methods=["GET"]),
        Route(f"{API}/products", r(emulator.patch_collection), methods=["PATCH"]),
        Route(f"{API}/products", r(emulator.create_product), methods=["POST"]),
        Route(f"{API}/products/{{identifier}}", r(emulator.get_product), methods=["GET"]),
        Route(f"{API}/products/{{identifier}}", r(emulator.patch_product), methods=["PATCH"]),
        Route(f"{API}/products/{{identifier}}", r(emulator.delete_product), methods=["DELETE"]),
        Route(f"{API}/families", r(emulator.list_families), methods=["GET"]),
        Route(f"{API}/families/{{code}}", r(emulator.get_family), methods=["GET"]),
        Route(f"{API}/attributes", r(emulator.list_attributes), methods=["GET"]),
        *admin_routes(faults),
    ]
    app = Starlette(routes=routes)
    app.state.emulator = emulator
    return FaultInjectionMiddleware(app, faults, fault_error_body)
