"""PIM in Akeneo's REST shape, over the shared httpx client.

OAuth password grant (client id and secret by HTTP Basic) renewed with the refresh grant
on a 401, products listed with ``search_after`` paging and ``search`` filters, and upserts
through the collection PATCH (``application/vnd.akeneo.collection+json``), answered line by
line. Retries go through :func:`connectors.retry.call_with_retry`, which honours
``Retry-After``; secrets and tokens are registered with :mod:`connectors.redact`.

Incremental reads. Akeneo filters ``updated`` at one-second precision and lists products
in identifier order only, so the cursor is composite: the last ``updated`` second read and
the identifiers already delivered at that second. A read asks for ``updated >= since``
(``> since - 1s``) and drops what the cursor says was delivered, so two products saved in
the same second are never skipped. It also asks for ``updated < now - settle`` (whole
seconds): only seconds that are over are read, so a product saved while the scan walks the
identifier order cannot land behind the cursor. Since the scan is not in ``updated``
order, only the last batch of a read carries the new cursor; a crash before it replays
the read, which upserts make harmless.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
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
from connectors.errors import AuthError, ConnectorError
from connectors.http import (
    RETRYABLE_STATUS,
    make_client,
    raise_for_status,
    transport_error,
)
from connectors.redact import redact, register_secret
from connectors.retry import RetryPolicy, call_with_retry
from connectors.settings import (
    CURSOR_OVERLAP_SECONDS,
    ca_bundle_env,
    cursor_overlap_env,
    env_var,
    read_settings,
    timeout_env,
)

SYSTEM = "pim"
PRODUCTS_PATH = "/api/rest/v1/products"
ATTRIBUTES_PATH = "/api/rest/v1/attributes"
#: A product's top-level properties in Akeneo's REST API (its attribute values sit under
#: ``values.<attribute code>``, listed by the PIM itself at /attributes).
PRODUCT_PROPERTIES = frozenset(
    {
        "uuid",
        "identifier",
        "enabled",
        "family",
        "categories",
        "groups",
        "parent",
        "values",
        "associations",
        "quantified_associations",
        "created",
        "updated",
        "metadata",
    }
)
TOKEN_PATH = "/api/oauth/v1/token"  # noqa: S105 - a route, not a secret
COLLECTION_TYPE = "application/vnd.akeneo.collection+json"
PAGE_LIMIT = 100  # Akeneo refuses more than 100 items per page
COLLECTION_LIMIT = 100  # and more than 100 lines per collection PATCH
AKENEO_DATE = "%Y-%m-%d %H:%M:%S"
#: Properties Akeneo maintains itself; never sent back on a PATCH.
READ_ONLY = frozenset({"created", "updated", "_links", "metadata", "completenesses"})


@dataclass
class PimSettings:
    url: str = field(metadata=env_var("PIM_URL", required=True))
    client_id: str = field(metadata=env_var("PIM_CLIENT_ID"))
    secret: str = field(metadata=env_var("PIM_SECRET", secret=True))
    username: str = field(metadata=env_var("PIM_USERNAME"))
    password: str = field(metadata=env_var("PIM_PASSWORD", secret=True))
    ca_bundle: str | None = field(default=None, metadata=ca_bundle_env())
    timeout: float = field(default=30.0, metadata=timeout_env())
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    #: seconds of server time an incremental read leaves alone (clock skew allowance)
    settle_seconds: int = 1
    cursor_overlap_seconds: float = field(
        default=CURSOR_OVERLAP_SECONDS,
        metadata=cursor_overlap_env("PIM_CURSOR_OVERLAP_SECONDS"),
    )


class PimConnector:
    """The PIM behind the :class:`connectors.base.Connector` protocol (entity: product)."""

    system = SYSTEM

    def __init__(self, settings: PimSettings) -> None:
        self.settings = settings
        for secret in (settings.secret, settings.password):
            register_secret(secret)
        self.client = make_client(
            settings.url, ca_bundle=settings.ca_bundle, timeout=settings.timeout
        )
        self._token: str | None = None
        self._refresh: str | None = None
        self.api_calls = 0
        self.token_grants: list[str] = []  # grant types used, in order (observability)

    def entities(self) -> Sequence[str]:
        return ["product"]

    # -- transport ----------------------------------------------------------------------
    def _authenticate(self) -> None:
        """Get a token: the refresh grant when a refresh token is held, else (or when the
        refresh token is refused too) the password grant."""
        s = self.settings
        grant = "refresh_token" if self._refresh else "password"
        body: dict[str, str] = (
            {"grant_type": "refresh_token", "refresh_token": self._refresh or ""}
            if grant == "refresh_token"
            else {"grant_type": "password", "username": s.username, "password": s.password}
        )
        response = self._send(
            "POST", TOKEN_PATH, json=body, auth=(s.client_id, s.secret), authenticated=False
        )
        if response.status_code in RETRYABLE_STATUS:
            raise_for_status(SYSTEM, response)  # TransientError: the caller's retry covers it
        if response.status_code != 200 and grant == "refresh_token":
            self._refresh = None  # the refresh token expired or was revoked: start over
            self._authenticate()
            return
        if response.status_code != 200:
            raise AuthError(
                SYSTEM,
                f"token call refused ({response.status_code}): "
                f"{redact(response.text[:300])}. Check PIM_CLIENT_ID/PIM_SECRET "
                "and PIM_USERNAME/PIM_PASSWORD.",
                status=response.status_code,
            )
        token = response.json()
        self._token, self._refresh = token["access_token"], token.get("refresh_token")
        register_secret(self._token)
        register_secret(self._refresh)
        self.token_grants.append(grant)

    def _send(
        self, method: str, path: str, *, authenticated: bool = True, **kwargs: Any
    ) -> httpx.Response:
        headers = dict(kwargs.pop("headers", {}) or {})
        if authenticated:
            headers["Authorization"] = f"Bearer {self._token}"
        try:
            self.api_calls += 1
            return self.client.request(method, path, headers=headers, **kwargs)
        except httpx.TransportError as exc:
            raise transport_error(SYSTEM, exc) from None

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        def attempt() -> httpx.Response:
            if self._token is None:
                self._authenticate()
            response = self._send(method, path, **kwargs)
            if response.status_code == 401:  # expired or revoked token: renew once
                self._token = None
                self._authenticate()
                response = self._send(method, path, **kwargs)
            raise_for_status(SYSTEM, response)
            return response

        return call_with_retry(SYSTEM, attempt, self.settings.retry)

    # -- reads --------------------------------------------------------------------------
    def _pages(self, search: dict[str, Any] | None) -> Iterator[list[dict[str, Any]]]:
        """Every page of a search-after listing, following ``_links.next``."""
        params: dict[str, Any] | None = {"pagination_type": "search_after", "limit": PAGE_LIMIT}
        if search:
            params = {**(params or {}), "search": json.dumps(search)}
        url: str | None = PRODUCTS_PATH
        while url:
            payload = self._request("GET", url, params=params).json()
            yield [_without_links(i) for i in payload.get("_embedded", {}).get("items", [])]
            url = payload.get("_links", {}).get("next", {}).get("href")
            # The next link carries every parameter; httpx would drop its query for any
            # params given, even an empty dict, so pass none.
            params = None

    def read_changes(self, entity: str, cursor: str | None) -> Iterator[Batch]:
        """Products updated since the cursor, one batch per page; the last batch carries
        the new cursor (see the module docstring for why only the last)."""
        since, seen = _decode(cursor)
        upper = _floor_second(datetime.now(UTC)) - timedelta(seconds=self.settings.settle_seconds)
        filters: list[dict[str, Any]] = [{"operator": "<", "value": _akeneo_date(upper)}]
        if since is not None:  # from the overlap before the cursor: late commits are read
            start = since - timedelta(seconds=1 + self.settings.cursor_overlap_seconds)
            filters.append({"operator": ">", "value": _akeneo_date(_floor_second(start))})
        newest: datetime | None = None
        at_newest: set[str] = set()
        held: list[dict[str, Any]] | None = None
        for page in self._pages({"updated": filters}):
            fresh = []
            for item in page:
                stamp = _parse_stamp(item.get("updated"))
                if stamp == since and str(item.get("identifier")) in seen:
                    continue  # delivered by the previous read
                fresh.append(item)
                if newest is None or stamp > newest:
                    newest, at_newest = stamp, set()
                if stamp == newest:
                    at_newest.add(str(item.get("identifier")))
            if not fresh:
                continue
            if held is not None:
                yield Batch(held)
            held = fresh
        if held is None or newest is None:
            return
        if since is not None and newest <= since:  # only the overlap was re-read
            newest, at_newest = since, at_newest | seen if newest == since else set(seen)
        yield Batch(held, json.dumps([newest.isoformat(), sorted(at_newest)]))

    def read_snapshot(self, entity: str, window: Window | None = None) -> Iterator[Batch]:
        """Every product, or those updated within ``window`` (start inclusive, end
        exclusive, rounded outwards to Akeneo's whole seconds)."""
        search: dict[str, Any] | None = None
        if window and (window.start or window.end):
            filters = []
            if window.start:
                lowest = _ceil_second(window.start) - timedelta(seconds=1)
                filters.append({"operator": ">", "value": _akeneo_date(lowest)})
            if window.end:
                filters.append({"operator": "<", "value": _akeneo_date(_ceil_second(window.end))})
            search = {"updated": filters}
        for items in self._pages(search):
            if items:
                yield Batch(items)

    def read_by_keys(self, entity: str, keys: Sequence[str]) -> Iterator[Batch]:
        """Products by identifier, 100 per ``identifier IN`` query."""
        unique = list(dict.fromkeys(str(k) for k in keys))
        for i in range(0, len(unique), PAGE_LIMIT):
            search = {"identifier": [{"operator": "IN", "value": unique[i : i + PAGE_LIMIT]}]}
            for items in self._pages(search):
                if items:
                    yield Batch(items)

    # -- writes -------------------------------------------------------------------------
    def write_batch(self, entity: str, records: Iterable[NativeRecord]) -> list[WriteResult]:
        """Upsert by identifier, 100 lines per collection PATCH. Each chunk's current state
        is read first (one call) so records that would change nothing are reported
        ``unchanged`` and not sent; Akeneo itself answers 204 either way."""
        rows = [_writable(r) for r in records]
        out: list[WriteResult] = []
        for i in range(0, len(rows), COLLECTION_LIMIT):
            out.extend(self._write_chunk(rows[i : i + COLLECTION_LIMIT]))
        return out

    def _write_chunk(self, chunk: list[NativeRecord]) -> list[WriteResult]:
        keys = [str(r["identifier"]) for r in chunk if isinstance(r.get("identifier"), str)]
        current = {
            str(item["identifier"]): item
            for batch in self.read_by_keys("product", keys)
            for item in batch.records
        }
        results: list[WriteResult | None] = [None] * len(chunk)
        to_send: list[int] = []
        sending: set[str] = set()
        for n, record in enumerate(chunk):
            key = str(record.get("identifier"))
            stored = current.get(key)
            # A key already sent in this chunk is sent again: the state read first no
            # longer tells what the record would change.
            if key not in sending and stored is not None and _patched(stored, record) == stored:
                results[n] = WriteResult(key, Outcome.UNCHANGED, external_id=key)
            else:
                to_send.append(n)
                sending.add(key)
        if to_send:
            body = "\n".join(json.dumps(chunk[n]) for n in to_send)
            response = self._request(
                "PATCH",
                PRODUCTS_PATH,
                content=body.encode(),
                headers={"Content-Type": COLLECTION_TYPE},
            )
            answers = {
                int(a.get("line", 0)): a
                for a in (json.loads(line) for line in response.text.splitlines() if line.strip())
            }
            for line, n in enumerate(to_send, start=1):
                results[n] = _result(str(chunk[n].get("identifier")), answers.get(line, {}))
        return [r for r in results if r is not None]

    def native_fields(self) -> dict[str, frozenset[str]]:
        """The product's properties and ``values.<code>`` for every attribute the PIM
        lists (paged as Akeneo pages code-keyed lists)."""
        codes: set[str] = set()
        url: str | None = ATTRIBUTES_PATH
        params: dict[str, Any] | None = {"limit": PAGE_LIMIT}
        while url:
            payload = self._request("GET", url, params=params).json()
            codes |= {str(a["code"]) for a in payload.get("_embedded", {}).get("items", [])}
            url, params = payload.get("_links", {}).get("next", {}).get("href"), None
        return {"products": PRODUCT_PROPERTIES | {f"values.{code}" for code in codes}}

    def health(self) -> Health:
        started = time.monotonic()
        try:
            self._request("GET", PRODUCTS_PATH, params={"limit": 1})
        except ConnectorError as exc:
            return Health(SYSTEM, False, str(exc))
        return Health(SYSTEM, True, "ok", (time.monotonic() - started) * 1000)

    def close(self) -> None:
        self.client.close()


def _result(key: str, answer: dict[str, Any]) -> WriteResult:
    status = int(answer.get("status_code", 0))
    if status == 201:
        return WriteResult(key, Outcome.CREATED, external_id=key)
    if status == 204:
        return WriteResult(key, Outcome.UPDATED, external_id=key)
    details = "; ".join(
        f"{e.get('property')}"
        + (f"[{e['attribute']}]" if e.get("attribute") else "")
        + f": {e.get('message')}"
        for e in answer.get("errors") or []
    )
    message = str(answer.get("message") or "no answer for this line")
    return WriteResult(
        key,
        Outcome.REJECTED,
        error=f"{message} {details}".strip() if details else message,
        error_code=str(status or "no answer"),
    )


def _writable(record: NativeRecord) -> NativeRecord:
    return {k: v for k, v in record.items() if k not in READ_ONLY}


def _without_links(item: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in item.items() if k != "_links"}


def _patched(stored: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """``stored`` after Akeneo's PATCH rules: objects merge (``values`` per attribute and
    locale/scope), anything else replaces."""
    out = copy.deepcopy(stored)
    for prop, value in patch.items():
        if prop == "values" and isinstance(value, dict):
            values = out.setdefault("values", {})
            for attribute, entries in value.items():
                kept = {(e.get("locale"), e.get("scope")): e for e in values.get(attribute, [])}
                for entry in entries or []:
                    kept[(entry.get("locale"), entry.get("scope"))] = entry
                values[attribute] = [e for e in kept.values() if e.get("data") is not None]
                if not values[attribute]:
                    del values[attribute]
        elif isinstance(value, dict):
            out[prop] = {**(out.get(prop) or {}), **value}
        else:
            out[prop] = value
    return out


def _parse_stamp(value: Any) -> datetime:
    moment = datetime.fromisoformat(str(value))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _floor_second(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(microsecond=0)


def _ceil_second(moment: datetime) -> datetime:
    floor = _floor_second(moment)
    return floor if floor == moment.astimezone(UTC) else floor + timedelta(seconds=1)


def _akeneo_date(moment: datetime) -> str:
    """The ``YYYY-MM-DD hh:mm:ss`` (UTC) Akeneo's date filters take."""
    return moment.astimezone(UTC).strftime(AKENEO_DATE)


def _decode(cursor: str | None) -> tuple[datetime | None, set[str]]:
    if not cursor:
        return None, set()
    stamp, seen = json.loads(cursor)
    return _parse_stamp(stamp), {str(s) for s in seen}


def from_env(env: Mapping[str, str], objects: MappedObjects | None = None) -> PimConnector:
    """Built by connectors.registry from the variables :class:`PimSettings` declares."""
    return PimConnector(read_settings(PimSettings, env))
