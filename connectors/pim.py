"""PIM in Akeneo's REST shape, over the shared httpx client.

OAuth password grant (client id/secret by HTTP Basic), products listed with
``search_after`` paging and an ``updated`` filter, collection upserts as
``application/vnd.akeneo.collection+json`` answered line by line."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from connectors.base import Batch, Health, NativeRecord, Outcome, Window, WriteResult
from connectors.errors import AuthError, TransientError
from connectors.http import make_client, raise_for_status, transport_error
from connectors.redact import redact, register_secret
from connectors.retry import RetryPolicy, call_with_retry

SYSTEM = "pim"
PAGE_LIMIT = 100
COLLECTION_LIMIT = 100


@dataclass
class PimSettings:
    url: str
    client_id: str
    secret: str
    username: str
    password: str
    ca_bundle: str | None = None
    timeout: float = 30.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)


class PimConnector:
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

    def entities(self) -> Sequence[str]:
        return ["product"]

    # -- transport ----------------------------------------------------------------------
    def _authenticate(self) -> None:
        s = self.settings
        body: dict[str, str] = (
            {"grant_type": "refresh_token", "refresh_token": self._refresh}
            if self._refresh
            else {"grant_type": "password", "username": s.username, "password": s.password}
        )
        response = self._send(
            "POST",
            "/api/oauth/v1/token",
            json=body,
            auth=(s.client_id, s.secret),
            authenticated=False,
        )
        if response.status_code in (400, 401, 422) and self._refresh:
            self._refresh = None  # the refresh token expired too: start over
            return self._authenticate()
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
            if response.status_code == 401:  # expired token: renew once
                self._token = None
                self._authenticate()
                response = self._send(method, path, **kwargs)
            raise_for_status(SYSTEM, response)
            return response

        return call_with_retry(SYSTEM, attempt, self.settings.retry)

    # -- reads --------------------------------------------------------------------------
    def _list(self, search: dict[str, Any] | None) -> Iterator[list[dict[str, Any]]]:
        params: dict[str, Any] = {"pagination_type": "search_after", "limit": PAGE_LIMIT}
        if search:
            params["search"] = json.dumps(search)
        path: str | None = "/api/rest/v1/products"
        while path:
            response = self._request("GET", path, params=params)
            payload = response.json()
            yield list(payload.get("_embedded", {}).get("items", []))
            next_link = payload.get("_links", {}).get("next", {}).get("href")
            path, params = (next_link, {}) if next_link else (None, {})

    def read_changes(self, entity: str, cursor: str | None) -> Iterator[Batch]:
        """Products updated since the cursor. Akeneo's ``updated >`` filter has second
        precision, so the cursor keeps the identifiers already seen in its last second."""
        since, seen = _decode(cursor)
        search = None
        if since:
            search = {"updated": [{"operator": ">", "value": _second_before(since)}]}
        items_all: list[dict[str, Any]] = []
        for items in self._list(search):
            items_all.extend(
                i for i in items if not (i.get("updated") == since and i.get("identifier") in seen)
            )
        items_all.sort(key=lambda i: (str(i.get("updated")), str(i.get("identifier"))))
        for start in range(0, len(items_all), 500):
            page = items_all[start : start + 500]
            last = str(page[-1].get("updated"))
            ids = [str(i["identifier"]) for i in page if str(i.get("updated")) == last]
            if last == since:
                ids = sorted(set(ids) | set(seen))
            yield Batch(page, json.dumps([last, ids]))

    def read_snapshot(self, entity: str, window: Window | None = None) -> Iterator[Batch]:
        search: dict[str, Any] | None = None
        if window and (window.start or window.end):
            filters = []
            if window.start:
                filters.append({"operator": ">", "value": _akeneo_time(window.start)})
            if window.end:
                filters.append({"operator": "<", "value": _akeneo_time(window.end)})
            search = {"updated": filters}
        for items in self._list(search):
            if items:
                yield Batch(items)

    def read_by_keys(self, entity: str, keys: Sequence[str]) -> Iterator[Batch]:
        for i in range(0, len(keys), PAGE_LIMIT):
            search = {"identifier": [{"operator": "IN", "value": list(keys[i : i + PAGE_LIMIT])}]}
            for items in self._list(search):
                if items:
                    yield Batch(items)

    # -- writes -------------------------------------------------------------------------
    def write_batch(self, entity: str, records: Iterable[NativeRecord]) -> list[WriteResult]:
        records = [dict(r) for r in records]
        out: list[WriteResult] = []
        for i in range(0, len(records), COLLECTION_LIMIT):
            chunk = records[i : i + COLLECTION_LIMIT]
            body = "\n".join(json.dumps(_writable(r)) for r in chunk)
            response = self._request(
                "PATCH",
                "/api/rest/v1/products",
                content=body.encode(),
                headers={"Content-Type": "application/vnd.akeneo.collection+json"},
            )
            lines = [json.loads(line) for line in response.text.splitlines() if line.strip()]
            by_line = {int(line.get("line", 0)): line for line in lines}
            for n, record in enumerate(chunk, start=1):
                answer = by_line.get(n, {})
                key = str(record.get("identifier"))
                status = int(answer.get("status_code", 0))
                if status == 201:
                    out.append(WriteResult(key, Outcome.CREATED, external_id=key))
                elif status == 204:
                    out.append(WriteResult(key, Outcome.UPDATED, external_id=key))
                else:
                    errors = answer.get("errors") or []
                    detail = "; ".join(f"{e.get('property')}: {e.get('message')}" for e in errors)
                    out.append(
                        WriteResult(
                            key,
                            Outcome.REJECTED,
                            error=detail or answer.get("message", "rejected"),
                            error_code=str(status or "no answer"),
                        )
                    )
        return out

    def health(self) -> Health:
        started = time.monotonic()
        try:
            self._request("GET", "/api/rest/v1/products", params={"limit": 1})
        except (TransientError, AuthError) as exc:
            return Health(SYSTEM, False, str(exc))
        return Health(SYSTEM, True, "ok", (time.monotonic() - started) * 1000)

    def close(self) -> None:
        self.client.close()


def _writable(record: NativeRecord) -> NativeRecord:
    return {k: v for k, v in record.items() if k not in ("created", "updated", "_links")}


def _akeneo_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def _second_before(stamp: str) -> str:
    """The filter value that re-includes everything in the cursor's own second."""
    moment = datetime.fromisoformat(stamp)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return _akeneo_time(moment.replace(microsecond=0) - timedelta(seconds=1))


def _decode(cursor: str | None) -> tuple[str | None, list[str]]:
    if not cursor:
        return None, []
    stamp, seen = json.loads(cursor)
    return stamp, list(seen)


def from_env(env: Mapping[str, str]) -> PimConnector:
    return PimConnector(
        PimSettings(
            url=env["PIM_URL"],
            client_id=env.get("PIM_CLIENT_ID", ""),
            secret=env.get("PIM_SECRET", ""),
            username=env.get("PIM_USERNAME", ""),
            password=env.get("PIM_PASSWORD", ""),
            ca_bundle=env.get("HUB_CA_BUNDLE") or None,
        )
    )
