"""Salesforce through simple-salesforce.

The hub makes the OAuth 2.0 token call itself (JWT bearer when a private key is
configured, client credentials otherwise) and hands ``instance_url``/``session_id`` to
simple-salesforce, so re-authentication after ``INVALID_SESSION_ID`` is one code path.
Reads: SOQL built with ``format_soql`` on (SystemModstamp, Id) keyset order; REST
paging for deltas, Bulk API 2.0 query jobs for initial loads. Writes: sObject Collections
(200 records a call) below ``bulk_threshold``, Bulk API 2.0 ingest jobs above it. The
``Sforce-Limit-Info`` header is read after every REST call and the connector stops itself
before ``budget_share`` of the daily API budget is spent."""

from __future__ import annotations

import contextlib
import csv
import functools
import io
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import jwt
import requests
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from simple_salesforce import Salesforce, format_soql
from simple_salesforce.bulk2 import Operation, SFBulk2Type, _Bulk2Client
from simple_salesforce.exceptions import (
    SalesforceError,
    SalesforceExpiredSession,
    SalesforceGeneralError,
    SalesforceMalformedRequest,
    SalesforceRefusedRequest,
    SalesforceResourceNotFound,
)

from connectors.base import (
    Batch,
    Deletion,
    Health,
    MappedObjects,
    NativeRecord,
    Outcome,
    Window,
    WriteResult,
)
from connectors.errors import (
    AuthError,
    BudgetExhaustedError,
    ConnectorError,
    PermanentError,
    SystemUnavailableError,
    TransientError,
)
from connectors.http import requests_session
from connectors.redact import redact, register_secret
from connectors.retry import RetryPolicy, call_with_retry, parse_retry_after
from connectors.settings import (
    CURSOR_OVERLAP_SECONDS,
    ca_bundle_env,
    cursor_overlap_env,
    env_var,
    read_settings,
    timeout_env,
)

SYSTEM = "salesforce"
T = TypeVar("T")
COLLECTION_LIMIT = 200
#: The API version the connector is written and tested against (the default of
#: SALESFORCE_API_VERSION)
TESTED_API_VERSION = "61.0"
#: the statusCode of a write addressing a record by an Id that is in the recycle bin
DELETED = "ENTITY_IS_DELETED"


@dataclass(frozen=True)
class SObject:
    """What the connector needs to know of an entity's sObject (from its mapping)."""

    name: str
    external_id: str
    fields: tuple[str, ...]
    modstamp: str = "SystemModstamp"


#: Mapped fields whose presence depends on how the org is set up: ``CurrencyIsoCode``
#: exists only in multi-currency orgs; with State and Country/Territory Picklists the
#: ISO code of an address's country is ``<Address>CountryCode`` (the text field then holds
#: the country's name).
CURRENCY_FIELD = "CurrencyIsoCode"
COUNTRY_CODE_FIELDS = {
    "BillingCountry": "BillingCountryCode",
    "ShippingCountry": "ShippingCountryCode",
}
#: with State picklists, the subdivision's ISO 3166-2 code is ``<Address>StateCode`` (the
#: text field then accepts only the state's name): the region is read and written there
STATE_CODE_FIELDS = {
    "BillingState": "BillingStateCode",
    "ShippingState": "ShippingStateCode",
}
ORG_DEPENDENT = frozenset({CURRENCY_FIELD, *COUNTRY_CODE_FIELDS, *STATE_CODE_FIELDS})
#: error_code of a record refused before sending: its amounts are in another currency
#: than the single-currency org's
CURRENCY_MISMATCH = "CURRENCY_NOT_IN_ORG"
#: Salesforce's Pub/Sub API (gRPC over TLS), the Change Data Capture stream's endpoint
PUBSUB_URL = "api.pubsub.salesforce.com:7443"
#: The most events one Subscribe call may have requested and not yet received (the API's
#: limit: it treats anything above as 100)
PUBSUB_MAX_BATCH = 100
PUBSUB_URL_VARIABLE = "SALESFORCE_PUBSUB_URL"
#: The client name every REST, Collections and Bulk API call of the hub carries in its
#: ``Sforce-Call-Options`` header. Salesforce writes it into the ``changeOrigin`` of the
#: change events those writes cause (``com/salesforce/api/rest/61.0;client=<name>``): with
#: the integration user as ``commitUser`` it tells the hub's own writes from changes made
#: by other tools logging in as the same user. Kept stable across hub versions, so the
#: echo of a write made before an upgrade is still recognised.
CALL_CLIENT = "subscription-integration-hub"
CALL_OPTIONS_HEADER = "Sforce-Call-Options"
PUBSUB_BATCH_VARIABLE = "SALESFORCE_PUBSUB_BATCH"


def parse_pubsub_batch(raw: str) -> int | None:
    """``SALESFORCE_PUBSUB_BATCH``: a whole number from 1 to 100; blank: the default."""
    raw = raw.strip()
    if not raw:
        return None
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if not 1 <= value <= PUBSUB_MAX_BATCH:
        raise ValueError(
            f"{PUBSUB_BATCH_VARIABLE}={raw!r}: give a whole number of events from 1 to "
            f"{PUBSUB_MAX_BATCH} (the Pub/Sub API never has more than {PUBSUB_MAX_BATCH} "
            "requested events outstanding)"
        )
    return value


def parse_pubsub_url(raw: str) -> str | None:
    """``SALESFORCE_PUBSUB_URL``: ``host:port`` (an ``https://`` prefix is tolerated)."""
    text = raw.strip()
    if not text:
        return None
    for scheme in ("https://", "grpcs://"):
        if text.startswith(scheme):
            text = text[len(scheme) :]
    text = text.rstrip("/")
    host, colon, port = text.rpartition(":")
    if not colon or not host or not port.isdigit() or "/" in text:
        raise ValueError(
            f"{PUBSUB_URL_VARIABLE}={raw!r}: give host:port of the Pub/Sub API, e.g. {PUBSUB_URL}"
        )
    return text


@dataclass(frozen=True)
class OrgShape:
    """How one sObject looks in the live org (from its describe), and so how the
    connector reads and writes the mapped fields: ``renames`` maps a mapped field to the
    org field that holds it (``BillingCountry`` -> ``BillingCountryCode``, ``BillingState``
    -> ``BillingStateCode``), ``constants``
    are mapped fields the org lacks, presented with a fixed value on read and never
    written (``CurrencyIsoCode`` in a single-currency org: the org's currency)."""

    fields: frozenset[str] = frozenset()
    money: frozenset[str] = frozenset()
    renames: Mapping[str, str] = field(default_factory=dict)
    constants: Mapping[str, Any] = field(default_factory=dict)

    def query_fields(self, obj: SObject) -> tuple[str, ...]:
        return tuple(self.renames.get(f, f) for f in obj.fields if f not in self.constants)

    def to_mapped(self, record: dict[str, Any]) -> dict[str, Any]:
        for mapped, org in self.renames.items():
            if org in record:
                record[mapped] = record.pop(org)
        record.update(self.constants)
        return record


@dataclass
class SalesforceSettings:
    login_url: str = field(
        metadata=env_var(
            "SALESFORCE_LOGIN_URL",
            required=True,
            doc="OAuth host; token endpoint is <login_url>/services/oauth2/token",
        )
    )
    client_id: str = field(metadata=env_var("SALESFORCE_CLIENT_ID"))
    client_secret: str = field(
        default="", metadata=env_var("SALESFORCE_CLIENT_SECRET", secret=True)
    )
    username: str = field(
        default="", metadata=env_var("SALESFORCE_USERNAME", doc="JWT bearer subject")
    )
    private_key_file: str = field(
        default="",
        metadata=env_var("SALESFORCE_PRIVATE_KEY_FILE", doc="PEM key for the JWT bearer flow"),
    )
    api_version: str = field(default=TESTED_API_VERSION, metadata=env_var("SALESFORCE_API_VERSION"))
    ca_bundle: str | None = field(default=None, metadata=ca_bundle_env())
    #: ``aud`` of JWT assertions; empty: the login URL. Salesforce wants
    #: https://login.salesforce.com (or test.salesforce.com for sandboxes) even when the
    #: token is fetched from a My Domain URL.
    jwt_audience: str = ""
    bulk_threshold: int = 2000
    budget_share: float = 0.8
    page_size: int = 2000
    #: Values per ``IN (...)`` of read_by_keys: 500 keys of 40 characters stay well
    #: under SOQL's 100,000-character statement limit and the URL length of a GET.
    keys_per_query: int = 500
    #: Rows per Bulk API 2.0 query results page (the API's maxRecords).
    bulk_page_size: int = 50_000
    #: First wait after closing a Bulk API 2.0 job, then doubled up to bulk_poll_max:
    #: a small job is usually done within the first wait, so it costs one status call.
    #: The sandbox sets it low: its emulated org finishes a job as it is closed.
    bulk_poll_initial: float = field(
        default=0.5,
        metadata=env_var(
            "SALESFORCE_BULK_POLL_SECONDS",
            parse=lambda text: float(text) if text.strip() else None,
            doc="first wait before asking whether a Bulk API 2.0 job is done",
        ),
    )
    bulk_poll_max: float = 10.0
    bulk_timeout: float = 3600.0
    #: Largest CSV upload of one ingest job (simple-salesforce refuses above 100 MB).
    bulk_upload_bytes: int = 100 * 1024 * 1024 - 1024
    timeout: float = field(default=60.0, metadata=timeout_env())
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    #: How far before its cursor each incremental read starts again, so a record committed
    #: late with an earlier SystemModstamp is still read (the re-read ones are unchanged
    #: for the sync's fingerprints); a larger overlap costs only re-reading. 0 turns it off.
    cursor_overlap_seconds: float = field(
        default=CURSOR_OVERLAP_SECONDS,
        metadata=cursor_overlap_env("SALESFORCE_CURSOR_OVERLAP_SECONDS"),
    )
    #: Change Data Capture through the Pub/Sub API (``connectors.salesforce_pubsub``):
    #: ``host:port`` of its gRPC endpoint and how many events a subscriber asks for at a
    #: time (``num_requested``, 1 to 100). Only the change-event subscriber (``hub listen``)
    #: uses them; the REST connector ignores them.
    pubsub_url: str = field(
        default=PUBSUB_URL,
        metadata=env_var(
            PUBSUB_URL_VARIABLE,
            parse=parse_pubsub_url,
            doc=f"host:port of the Salesforce Pub/Sub API (gRPC, TLS; default {PUBSUB_URL})",
        ),
    )
    pubsub_batch: int = field(
        default=PUBSUB_MAX_BATCH,
        metadata=env_var(
            PUBSUB_BATCH_VARIABLE,
            parse=parse_pubsub_batch,
            doc=f"events a change-event subscriber requests at a time (1 to {PUBSUB_MAX_BATCH})",
        ),
    )

    def __post_init__(self) -> None:
        if not 1 <= self.pubsub_batch <= PUBSUB_MAX_BATCH:
            raise ValueError(
                f"{PUBSUB_BATCH_VARIABLE}={self.pubsub_batch}: give 1 to {PUBSUB_MAX_BATCH} "
                f"events per FetchRequest (the Pub/Sub API never delivers more than "
                f"{PUBSUB_MAX_BATCH} requested events at a time)"
            )


def sobjects_from_mapped(objects: MappedObjects) -> dict[str, SObject]:
    """The sObjects the connector reads and writes, by entity, from the hub's mappings."""
    return {
        entity: SObject(
            name=obj.name,
            external_id=obj.external_id,
            fields=tuple(sorted({*obj.fields, "SystemModstamp"})),
        )
        for entity, obj in objects.items()
    }


@functools.lru_cache(maxsize=4)
def _signing_key(pem: bytes) -> RSAPrivateKey:
    """The JWT bearer flow's private key, parsed once per key file content: loading a PEM
    validates the RSA key, which cost more CPU than the rest of a token call."""
    why = "it is not a PEM private key"
    with contextlib.suppress(ValueError, TypeError):
        key = load_pem_private_key(pem, password=None)
        if isinstance(key, RSAPrivateKey):
            return key
        why = f"it holds a {type(key).__name__.removeprefix('_')}, not an RSA key"
    raise AuthError(
        SYSTEM,
        f"SALESFORCE_PRIVATE_KEY_FILE cannot sign the JWT bearer assertion (RS256): {why}. "
        "Point it at the unencrypted PEM RSA key whose certificate the connected app holds.",
    )


class SalesforceConnector:
    system = SYSTEM

    def __init__(self, settings: SalesforceSettings, sobjects: Mapping[str, SObject]) -> None:
        self.settings = settings
        self.sobjects = dict(sobjects)
        for secret in (settings.client_secret,):
            register_secret(secret)
        self.session = requests_session(settings.ca_bundle, timeout=settings.timeout)
        # names the hub as the client of its writes: changeOrigin of their change events
        self.session.headers[CALL_OPTIONS_HEADER] = f"client={CALL_CLIENT}"
        self._retry_after: float | None = None
        self._usage: tuple[int, int] | None = None
        self.session.hooks["response"].append(self._remember_retry_after)
        self.api_calls = 0
        self._sf: Salesforce | None = None
        self._described: dict[str, dict[str, dict[str, Any]]] = {}
        self._shapes: dict[str, OrgShape] = {}
        self._org_currency: str | None = None

    # -- auth ---------------------------------------------------------------------------
    def _remember_retry_after(self, response: requests.Response, *_: Any, **__: Any) -> None:
        """Every answer (REST and Bulk API alike): Retry-After for the retry policy, and
        ``Sforce-Limit-Info: api-usage=USED/MAX`` for the daily budget."""
        self.api_calls += 1
        self._retry_after = parse_retry_after(response.headers.get("Retry-After"))
        info = response.headers.get("Sforce-Limit-Info", "")
        for part in info.split(","):
            name, _eq, value = part.strip().partition("=")
            used, _slash, total = value.partition("/")
            if name == "api-usage" and used.isdigit() and total.isdigit():
                self._usage = (int(used), int(total))

    def _token(self) -> dict[str, Any]:
        s = self.settings
        url = f"{s.login_url.rstrip('/')}/services/oauth2/token"
        if s.private_key_file:
            with open(s.private_key_file, "rb") as fh:
                key = _signing_key(fh.read())
            assertion = jwt.encode(
                {
                    "iss": s.client_id,
                    "sub": s.username,
                    "aud": (s.jwt_audience or s.login_url).rstrip("/"),
                    "exp": int(time.time()) + 180,
                },
                key,
                algorithm="RS256",
            )
            register_secret(assertion)
            data = {
                "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
                "assertion": assertion,
            }
        else:
            data = {
                "grant_type": "client_credentials",
                "client_id": s.client_id,
                "client_secret": s.client_secret,
            }
        try:
            response = self.session.post(url, data=data, timeout=s.timeout)
        except requests.exceptions.SSLError as exc:
            raise _tls_error(url, exc) from None
        except requests.RequestException as exc:
            raise TransientError(SYSTEM, f"token call failed: {redact(str(exc))}") from None
        if response.status_code in (429, 500, 502, 503, 504):
            raise TransientError(
                SYSTEM,
                f"token endpoint answered {response.status_code}",
                status=response.status_code,
                retry_after=self._retry_after,
            )
        if response.status_code != 200:
            raise AuthError(
                SYSTEM,
                f"OAuth token call to {url} refused ({response.status_code}): "
                f"{redact(response.text[:300])}. Check SALESFORCE_CLIENT_ID, the secret or "
                f"private key, and SALESFORCE_USERNAME.",
                status=response.status_code,
            )
        token = response.json()
        register_secret(token.get("access_token"))
        return dict(token)

    def _client(self, renew: bool = False) -> Salesforce:
        if self._sf is None or renew:
            token = call_with_retry(SYSTEM, self._token, self.settings.retry)
            self._sf = Salesforce(
                instance_url=token["instance_url"],
                session_id=token["access_token"],
                version=self.settings.api_version,
                session=self.session,
            )
        return self._sf

    def _call(self, fn: Callable[[Salesforce], T], *, retry: bool = True) -> T:
        """One API interaction: retries transient failures, re-authenticates once on an
        expired session, maps errors, and enforces the API budget *before* each attempt
        (the usage the last answer reported), so a call whose result would be thrown
        away is never made and a write that was applied is always reported."""

        def attempt() -> T:
            self._check_budget()
            try:
                try:
                    result = fn(self._client())
                except SalesforceExpiredSession:
                    result = fn(self._client(renew=True))
            except SalesforceExpiredSession as exc:
                raise AuthError(
                    SYSTEM,
                    f"session refused after re-authentication: {_sf_message(exc)}",
                    status=401,
                ) from None
            except SalesforceRefusedRequest as exc:
                if "REQUEST_LIMIT_EXCEEDED" in str(exc.content):
                    raise BudgetExhaustedError(
                        SYSTEM,
                        f"the org's daily API limit is spent ({_sf_message(exc)}); other "
                        "integrations share it. The sync resumes from its cursor once the "
                        "rolling 24-hour budget frees up.",
                        status=403,
                    ) from None
                raise PermanentError(SYSTEM, _sf_message(exc), status=403) from None
            except SalesforceMalformedRequest as exc:
                raise PermanentError(SYSTEM, _sf_message(exc), status=400) from None
            except SalesforceGeneralError as exc:
                if exc.status == 410:
                    raise self._retired_version(exc) from None
                if exc.status in (429, 500, 502, 503, 504):
                    raise TransientError(
                        SYSTEM,
                        f"{exc.status}: {_sf_message(exc)}",
                        status=exc.status,
                        retry_after=self._retry_after,
                    ) from None
                raise PermanentError(SYSTEM, _sf_message(exc), status=exc.status) from None
            except SalesforceError as exc:
                raise PermanentError(SYSTEM, _sf_message(exc)) from None
            except requests.exceptions.SSLError as exc:
                raise _tls_error(self.settings.login_url, exc) from None
            except requests.RequestException as exc:
                raise TransientError(SYSTEM, f"{type(exc).__name__}: {redact(str(exc))}") from None
            return result

        if not retry:
            return attempt()
        return call_with_retry(SYSTEM, attempt, self.settings.retry)

    def _retired_version(self, exc: SalesforceGeneralError) -> PermanentError:
        """410 GONE: the org no longer serves this API version (Salesforce retires
        versions older than three years); no retry will help, configuration will."""
        version = self.settings.api_version
        return PermanentError(
            SYSTEM,
            f"the org no longer serves REST API version {version} (410 GONE: "
            f"{_sf_message(exc)}). Set SALESFORCE_API_VERSION to a supported version (this "
            f"connector is tested with {TESTED_API_VERSION}; /services/data/ on the org lists "
            "the versions it serves).",
            status=410,
        )

    def _check_budget(self) -> None:
        if self._usage is None:
            return
        used, total = self._usage
        if total and used + 1 > self.settings.budget_share * total:
            raise BudgetExhaustedError(
                SYSTEM,
                f"stopped before call {used + 1} of the org's {total} daily API calls "
                f"({used} used, Sforce-Limit-Info): the hub may use "
                f"{self.settings.budget_share:.0%} of the daily budget. Raise the share or "
                f"wait for the budget to reset; the sync resumes from its cursor.",
            )

    # -- the org's shape ------------------------------------------------------------------
    def _describe(self, name: str) -> dict[str, dict[str, Any]]:
        """The fields of sObject ``name`` as the live org describes them, by name (one
        describe call per object and connector)."""
        if name not in self._described:

            def describe(sf: Salesforce) -> dict[str, Any]:
                try:
                    return dict(sf.restful(f"sobjects/{name}/describe") or {})
                except SalesforceResourceNotFound:
                    raise PermanentError(
                        SYSTEM,
                        f"the org has no sObject {name} (or the integration user cannot see "
                        "it): deploy it and grant the user's permission set access to it; see "
                        "docs/connector-salesforce.md",
                        status=404,
                    ) from None

            answer = self._call(describe)
            self._described[name] = {f["name"]: f for f in answer.get("fields", [])}
        return self._described[name]

    def _default_currency(self) -> str:
        """The org's currency (Organization.DefaultCurrencyIsoCode): in a single-currency
        org, the currency of every amount."""
        if self._org_currency is None:
            rows = list(self._rest_query("SELECT DefaultCurrencyIsoCode FROM Organization"))
            if not rows or not rows[0].get("DefaultCurrencyIsoCode"):
                raise PermanentError(
                    SYSTEM,
                    "the org did not tell its currency (Organization.DefaultCurrencyIsoCode)",
                )
            self._org_currency = str(rows[0]["DefaultCurrencyIsoCode"])
        return self._org_currency

    def _shape(self, obj: SObject) -> OrgShape:
        """How ``obj`` looks in this org, discovered on first use from its describe: only
        objects whose mapped fields depend on the org's setup are described for reads
        and writes (a describe is one API call)."""
        if obj.name not in self._shapes:
            if not ORG_DEPENDENT & set(obj.fields):
                self._shapes[obj.name] = OrgShape()
            else:
                self._shapes[obj.name] = self._discover(obj)
        return self._shapes[obj.name]

    def _discover(self, obj: SObject) -> OrgShape:
        described = self._describe(obj.name)
        renames = {
            mapped: code
            for mapped, code in (COUNTRY_CODE_FIELDS | STATE_CODE_FIELDS).items()
            if mapped in obj.fields and code in described
        }
        constants: dict[str, Any] = {}
        if CURRENCY_FIELD in obj.fields and CURRENCY_FIELD not in described:
            constants[CURRENCY_FIELD] = self._default_currency()
        money = frozenset(n for n, f in described.items() if f.get("type") == "currency")
        return OrgShape(frozenset(described), money, renames, constants)

    def native_fields(self) -> Mapping[str, frozenset[str]]:
        """{sObject: field names} of every mapped sObject as the live org describes it,
        plus the fields the connector derives for the mappings (``CurrencyIsoCode`` in a
        single-currency org), so a mapped field the org lacks can be named up front."""
        out: dict[str, frozenset[str]] = {}
        for obj in self.sobjects.values():
            names = set(self._describe(obj.name))
            if CURRENCY_FIELD in obj.fields and CURRENCY_FIELD not in names:
                names.add(CURRENCY_FIELD)  # presented as the org's currency
            out[obj.name] = frozenset(names)
        return out

    def _live(self, obj: SObject) -> tuple[SObject, OrgShape]:
        """``obj`` with the fields to query in this org, and its shape."""
        shape = self._shape(obj)
        if not shape.renames and not shape.constants:
            return obj, shape
        return replace(obj, fields=shape.query_fields(obj)), shape

    # -- reads --------------------------------------------------------------------------
    def entities(self) -> Sequence[str]:
        return list(self.sobjects)

    def _soql(self, obj: SObject, where: str = "", order: bool = True) -> str:
        # Identifiers come from the mapping files; every value goes through format_soql.
        soql = f"SELECT {', '.join(obj.fields)} FROM {obj.name}"  # noqa: S608
        if where:
            soql += f" WHERE {where}"
        if order:
            soql += f" ORDER BY {obj.modstamp}, Id"
        return soql

    def _since(self, obj: SObject, stored: tuple[datetime, str] | None) -> str:
        """The WHERE of an incremental read: from the overlap before the cursor's stamp,
        or, with no overlap, the keyset after the cursor's (stamp, Id)."""
        if stored is None:
            return ""
        stamp, last_id = stored
        overlap = timedelta(seconds=self.settings.cursor_overlap_seconds)
        if overlap:
            try:
                start = stamp - overlap
            except OverflowError:  # a cursor near year 1: read from the beginning
                return ""
            return format_soql(f"{obj.modstamp} >= {{:literal}}", _soql_datetime(start))
        return format_soql(
            f"{obj.modstamp} > {{stamp:literal}} OR ({obj.modstamp} = {{stamp:literal}} "
            "AND Id > {last_id})",
            stamp=_soql_datetime(stamp),
            last_id=last_id,
        )

    def read_changes(self, entity: str, cursor: str | None) -> Iterator[Batch]:
        """Records changed since ``cursor`` in (SystemModstamp, Id) order. The cursor is
        ``stamp|Id``, the stamp an aware UTC time in ISO 8601; each read starts
        ``SALESFORCE_CURSOR_OVERLAP_SECONDS`` before it, so a record committed late with an
        earlier stamp is read too, and a batch's cursor never moves back (while the
        overlap is re-read it stays where it was)."""
        obj, shape = self._live(self.sobjects[entity])
        stored = _decode_cursor(cursor)
        soql = self._soql(obj, self._since(obj, stored))
        rows = self._bulk_query(soql) if cursor is None else self._rest_query(soql)
        for batch in self._batches(obj, rows, with_cursor=True, shape=shape):
            if stored is None or _position(batch.records[-1], obj) > _order(stored):
                yield batch
            else:
                yield Batch(batch.records, cursor)

    def read_snapshot(self, entity: str, window: Window | None = None) -> Iterator[Batch]:
        obj, shape = self._live(self.sobjects[entity])
        clauses = []
        if window and window.start:
            clauses.append(
                format_soql(f"{obj.modstamp} >= {{:literal}}", _soql_datetime(window.start))
            )
        if window and window.end:
            clauses.append(
                format_soql(f"{obj.modstamp} < {{:literal}}", _soql_datetime(window.end))
            )
        soql = self._soql(obj, " AND ".join(clauses), order=False)
        yield from self._batches(obj, self._bulk_query(soql), with_cursor=False, shape=shape)

    def read_by_keys(self, entity: str, keys: Sequence[str]) -> Iterator[Batch]:
        obj, shape = self._live(self.sobjects[entity])
        step = self.settings.keys_per_query
        for i in range(0, len(keys), step):
            where = format_soql(f"{obj.external_id} IN {{}}", list(keys[i : i + step]))
            rows = self._rest_query(self._soql(obj, where))
            yield from self._batches(obj, rows, with_cursor=False, shape=shape)

    def read_deletions(self, entity: str, since: datetime | None) -> list[Deletion] | None:
        """Records deleted since ``since`` (the last 15 days when None), from Salesforce's
        delete log through sObject Get Deleted: those in the recycle bin and those already
        purged from it (Bulk API ``hardDelete``, an emptied recycle bin), which ``queryAll``
        no longer finds. The log keeps 15 days, less when an admin purged it: for a
        ``since`` it no longer covers (``earliestDateAvailable`` after it) it cannot tell,
        and says so (None). The log names a record by its Id only; the hub knows which
        record that is from its links."""
        obj = self.sobjects[entity]
        now = datetime.now(UTC)
        oldest = now - RECYCLE_BIN_DAYS + DELETE_LOG_MARGIN
        start = oldest if since is None else since
        if start < oldest:
            return None
        # the API ignores seconds: a window ending now would end at the start of this
        # minute and miss the deletes made in it, so it ends at the next minute. Salesforce
        # may cover less (latestDateCovered); the caller's next window starts minutes
        # before this call (hub.sync.deletions.OVERLAP), which reads that tail again.
        end = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
        answer = self._call(lambda sf: getattr(sf, obj.name).deleted(start, end))
        earliest = answer.get("earliestDateAvailable")
        if since is not None and earliest and _parse_sf_datetime(str(earliest)) > since:
            return None
        return [
            Deletion(
                external_id=str(row["id"]),
                key=None,
                deleted_at=_parse_sf_datetime(str(row["deletedDate"])),
            )
            for row in answer.get("deletedRecords") or []
        ]

    def _rest_query(self, soql: str) -> Iterator[dict[str, Any]]:
        """REST query with nextRecordsUrl paging, one page per API call."""
        page = self._call(lambda sf: sf.query(soql))
        while True:
            for record in page["records"]:
                record.pop("attributes", None)
                yield record
            if page.get("done", True):
                return
            next_url: str = page["nextRecordsUrl"]

            def more(sf: Salesforce, url: str = next_url) -> dict[str, Any]:
                return dict(sf.query_more(url, identifier_is_url=True))

            page = self._call(more)

    def _bulk_query(self, soql: str) -> Iterator[dict[str, Any]]:
        """Bulk API 2.0 query job: create, poll until JobComplete, then stream the CSV
        result pages (``Sforce-Locator``), each page its own retried call, so a dropped
        page is fetched again by its locator and never restarts the job."""
        obj_name = soql.split(" FROM ", 1)[1].split()[0]

        def create(sf: Salesforce) -> str:
            job = _bulk2(sf, obj_name).create_job(Operation.query, query=soql)
            return str(job["id"])

        job_id = self._call(create)
        self._wait_for_job(obj_name, job_id, is_query=True)
        locator = ""
        while True:

            def page(sf: Salesforce, at: str = locator) -> dict[str, Any]:
                return dict(
                    _bulk2(sf, obj_name).get_query_results(
                        job_id, locator=at, max_records=self.settings.bulk_page_size
                    )
                )

            result = self._call(page)
            for row in csv.DictReader(io.StringIO(result["records"])):
                yield {k: (None if v == "" else v) for k, v in row.items()}
            locator = result["locator"]
            if not locator:
                return

    def _wait_for_job(self, obj_name: str, job_id: str, *, is_query: bool) -> dict[str, Any]:
        """Poll a Bulk API 2.0 job until it is final. Waits start at bulk_poll_initial
        and double up to bulk_poll_max, so a quick job costs one status call and a long
        one a few per minute, not one per second."""
        wait = self.settings.bulk_poll_initial
        deadline = time.monotonic() + self.settings.bulk_timeout
        while True:
            time.sleep(wait)

            def status(sf: Salesforce) -> dict[str, Any]:
                return dict(_bulk2(sf, obj_name).get_job(job_id, is_query))

            info = self._call(status)
            state = info.get("state")
            if state == "JobComplete" or (not is_query and state in ("Failed", "Aborted")):
                return info
            if state in ("Failed", "Aborted"):
                why = redact(str(info.get("errorMessage")))
                raise PermanentError(SYSTEM, f"Bulk API job {job_id} {state}: {why}")
            if time.monotonic() > deadline:
                raise TransientError(
                    SYSTEM,
                    f"Bulk API job {job_id} still {state} after "
                    f"{self.settings.bulk_timeout:.0f} s; it may finish later: the next run "
                    "writes the same records again by external id.",
                )
            wait = min(wait * 2, self.settings.bulk_poll_max)

    def _batches(
        self,
        obj: SObject,
        rows: Iterable[dict[str, Any]],
        *,
        with_cursor: bool,
        shape: OrgShape | None = None,
    ) -> Iterator[Batch]:
        """Rows in pages of ``page_size``, in the mapped field names (``shape``)."""
        reshape = shape is not None and bool(shape.renames or shape.constants)
        page: list[dict[str, Any]] = []
        for row in rows:
            page.append(shape.to_mapped(row) if reshape and shape else row)
            if len(page) >= self.settings.page_size:
                yield self._batch(obj, page, with_cursor)
                page = []
        if page:
            yield self._batch(obj, page, with_cursor)

    @staticmethod
    def _batch(obj: SObject, page: list[dict[str, Any]], with_cursor: bool) -> Batch:
        if not with_cursor:
            return Batch(page)
        last = page[-1]
        stamp = _parse_sf_datetime(str(last[obj.modstamp]))
        return Batch(page, f"{stamp.isoformat()}|{last['Id']}")

    # -- writes -------------------------------------------------------------------------
    def write_batch(self, entity: str, records: Iterable[NativeRecord]) -> list[WriteResult]:
        obj = self.sobjects[entity]
        shape = self._shape(obj)
        records = [dict(r) for r in records]
        results: dict[int, WriteResult] = {}
        if shape.renames or shape.constants:
            for i, record in enumerate(records):
                refused = self._to_org(obj, shape, record)
                if refused is not None:
                    results[i] = refused
        todo = [(i, r) for i, r in enumerate(records) if i not in results]
        by_id = [(i, r) for i, r in todo if r.get("Id")]
        by_ext = [(i, r) for i, r in todo if not r.get("Id")]
        bulk = len(todo) > self.settings.bulk_threshold
        for group, update in ((by_id, True), (by_ext, False)):
            if not group:
                continue
            writer = self._bulk_write if bulk else self._collection_write
            for (i, _), result in zip(
                group, writer(obj, [r for _, r in group], update), strict=True
            ):
                results[i] = result
        return [results[i] for i in range(len(records))]

    def _to_org(self, obj: SObject, shape: OrgShape, record: NativeRecord) -> WriteResult | None:
        """Rewrite ``record`` (in place) in the org's field names: the country's ISO code
        into ``<Address>CountryCode``, the region's into ``<Address>StateCode`` (never as
        text into ``<Address>State``); a field the org lacks (``CurrencyIsoCode`` in a
        single-currency org) left out. A record whose amounts are in another currency
        than the single-currency org's is refused here (the org would show them as its
        own currency): the answer, else None."""
        for mapped, org in shape.renames.items():
            if mapped in record:
                record[org] = record.pop(mapped)
        for mapped, value in shape.constants.items():
            given = record.pop(mapped, None)
            amounts = [f for f in shape.money if record.get(f) not in (None, "")]
            if mapped == CURRENCY_FIELD and given not in (None, "", value) and amounts:
                key = str(record.get(obj.external_id) or record.get("Id"))
                return WriteResult(
                    key,
                    Outcome.REJECTED,
                    error=f"the org is single-currency ({value}); this record's amounts "
                    f"({', '.join(sorted(amounts))}) are in {given}, which it cannot hold. "
                    "Enable multiple currencies in the org, or keep these records out of it",
                    error_code=CURRENCY_MISMATCH,
                )
        return None

    def _collection_write(
        self, obj: SObject, records: list[NativeRecord], update: bool
    ) -> list[WriteResult]:
        out: list[WriteResult] = []
        for i in range(0, len(records), COLLECTION_LIMIT):
            chunk = records[i : i + COLLECTION_LIMIT]
            body = {
                "allOrNone": False,
                "records": [{"attributes": {"type": obj.name}, **_clean(r)} for r in chunk],
            }
            path = (
                "composite/sobjects"
                if update
                else (f"composite/sobjects/{obj.name}/{obj.external_id}")
            )

            def send(sf: Salesforce, p: str = path, b: dict[str, Any] = body) -> list[Any]:
                return list(sf.restful(p, method="PATCH", json=b) or [])

            answers = self._call(send)
            for record, answer in zip(chunk, answers, strict=True):
                key = str(record.get(obj.external_id) or record.get("Id"))
                if answer.get("success"):
                    outcome = Outcome.CREATED if answer.get("created") else Outcome.UPDATED
                    out.append(WriteResult(key, outcome, external_id=answer.get("id")))
                else:
                    errors = answer.get("errors") or [{}]
                    code = errors[0].get("statusCode")
                    out.append(
                        WriteResult(
                            key,
                            Outcome.REJECTED,
                            error=errors[0].get("message", "rejected"),
                            error_code=code,
                            gone=code == DELETED,
                        )
                    )
        return out

    def delete_batch(self, entity: str, external_ids: Sequence[str]) -> list[WriteResult]:
        """sObject Collections DELETE (``ids``, 200 at a time, ``allOrNone=false``); a
        record already in the recycle bin or purged counts as deleted."""
        out: list[WriteResult] = []
        for i in range(0, len(external_ids), COLLECTION_LIMIT):
            chunk = list(external_ids[i : i + COLLECTION_LIMIT])
            params = {"ids": ",".join(chunk), "allOrNone": "false"}

            def send(sf: Salesforce, p: dict[str, str] = params) -> list[Any]:
                return list(sf.restful("composite/sobjects", method="DELETE", params=p) or [])

            for record_id, answer in zip(chunk, self._call(send), strict=True):
                errors = answer.get("errors") or [{}]
                code = errors[0].get("statusCode")
                if answer.get("success") or code in (DELETED, "NOT_FOUND"):
                    out.append(WriteResult(record_id, Outcome.DELETED, external_id=record_id))
                else:
                    message = errors[0].get("message", "rejected")
                    out.append(
                        WriteResult(record_id, Outcome.REJECTED, error=message, error_code=code)
                    )
        return out

    def _bulk_write(
        self, obj: SObject, records: list[NativeRecord], update: bool
    ) -> list[WriteResult]:
        """Bulk API 2.0 ingest, one job per upload: a job takes one CSV upload of at most
        100 MB (simple-salesforce's check, under the API's 150 MB), so a larger batch is
        halved until each half fits."""
        data = _to_csv(records)
        if len(data.encode()) <= self.settings.bulk_upload_bytes or len(records) == 1:
            return self._bulk_job(obj, records, update, data)
        half = len(records) // 2
        return self._bulk_write(obj, records[:half], update) + self._bulk_write(
            obj, records[half:], update
        )

    def _bulk_job(
        self, obj: SObject, records: list[NativeRecord], update: bool, data: str
    ) -> list[WriteResult]:
        """One Bulk API 2.0 ingest job (update by Id, or upsert by external id):
        create, upload, close, poll, then the successful and failed results; the
        unprocessed ones only when the job left rows unprocessed. Every record ends with
        exactly one result: rows in no result list are reported rejected, never dropped."""
        key_field = "Id" if update else obj.external_id
        job_id, info = self._run_ingest_job(obj, data, update)
        ok_csv = failed_csv = ""
        if info.get("state") == "JobComplete":
            ok_csv = self._ingest_results(obj.name, job_id, "successfulResults")
            failed_csv = self._ingest_results(obj.name, job_id, "failedResults")
        answers: dict[str, WriteResult] = {}
        for row in csv.DictReader(io.StringIO(ok_csv)):
            key = row.get(key_field, "")
            created = row.get("sf__Created", "false").lower() == "true"
            answers[key] = WriteResult(
                key, Outcome.CREATED if created else Outcome.UPDATED, external_id=row.get("sf__Id")
            )
        for row in csv.DictReader(io.StringIO(failed_csv)):
            key = row.get(key_field, "")
            code, _, rest = (row.get("sf__Error") or "").partition(":")
            message = rest.rsplit(":", 1)[0] if rest.endswith("--") else rest
            answers[key] = WriteResult(
                key,
                Outcome.REJECTED,
                error=message.strip() or code,
                error_code=code or None,
                gone=code == DELETED,
            )
        job_error = str(info.get("errorMessage") or "")
        if len(answers) < len(records):
            # Rows the job never processed (a failed or aborted job, or one stopped at a
            # limit): Salesforce lists them in unprocessedrecords.
            why = f"not processed by Bulk API job {job_id} ({info.get('state')})"
            if job_error:
                why += f": {redact(job_error)}"
            unprocessed = self._ingest_results(obj.name, job_id, "unprocessedrecords")
            for row in csv.DictReader(io.StringIO(unprocessed)):
                key = row.get(key_field, "")
                answers.setdefault(
                    key, WriteResult(key, Outcome.REJECTED, error=why, error_code="UNPROCESSED")
                )
        out = []
        for record in records:
            key = str(record.get(key_field))
            out.append(
                answers.get(key)
                or WriteResult(
                    key,
                    Outcome.REJECTED,
                    error=f"Bulk API job {job_id} reported no result for this record",
                    error_code="UNPROCESSED",
                )
            )
        return out

    def _run_ingest_job(self, obj: SObject, data: str, update: bool) -> tuple[str, dict[str, Any]]:
        """Create, upload and close a job; answer its id and final status.

        A failed upload is not re-sent to the same job (a second upload would add the
        rows twice, and whether the first landed is unknown): the job is aborted and the
        whole job made again. That is safe because both operations are idempotent
        (update by Id, upsert by external id)."""
        operation = Operation.update if update else Operation.upsert
        external_id = None if update else obj.external_id
        policy = self.settings.retry
        last: TransientError | None = None
        for attempt in range(policy.max_attempts):

            def create(sf: Salesforce) -> str:
                job = _bulk2(sf, obj.name).create_job(operation, external_id_field=external_id)
                return str(job["id"])

            job_id = self._call(create)

            def upload(sf: Salesforce, job: str = job_id) -> None:
                _bulk2(sf, obj.name).upload_job_data(job, data)

            try:
                self._call(upload, retry=False)
            except TransientError as exc:
                last = exc
                self._abort_quietly(obj.name, job_id)
                wait = exc.retry_after
                if wait is None:
                    wait = policy.initial_wait * 2**attempt
                time.sleep(min(wait, policy.max_wait))
                continue
            self._close_job(obj.name, job_id)
            return job_id, self._wait_for_job(obj.name, job_id, is_query=False)
        raise SystemUnavailableError(
            SYSTEM,
            f"Bulk API upload failed {policy.max_attempts} times ({last}); the jobs were "
            "aborted, so nothing of this batch was applied by them.",
            status=last.status if last else None,
        )

    def _close_job(self, obj_name: str, job_id: str) -> None:
        """UploadComplete; if the answer was lost and a retry finds the job no longer
        open (409 INVALIDJOBSTATE), the first close did land."""

        def close(sf: Salesforce) -> None:
            try:
                _bulk2(sf, obj_name).close_job(job_id)
            except SalesforceError as exc:
                if exc.status == 409 and "INVALIDJOBSTATE" in str(exc.content):
                    return
                raise

        self._call(close)

    def _abort_quietly(self, obj_name: str, job_id: str) -> None:
        # An open job whose abort fails expires on its own, unprocessed.
        with contextlib.suppress(ConnectorError):
            self._call(lambda sf: _bulk2(sf, obj_name).abort_job(job_id, False))

    def _ingest_results(self, obj_name: str, job_id: str, which: str) -> str:
        return self._call(lambda sf: _bulk2(sf, obj_name).get_ingest_results(job_id, which))

    # -- health -------------------------------------------------------------------------
    def health(self) -> Health:
        started = time.monotonic()
        try:
            limits = self._call(lambda sf: sf.limits())
        except Exception as exc:
            return Health(SYSTEM, False, redact(str(exc)))
        daily = limits.get("DailyApiRequests", {})
        return Health(
            SYSTEM,
            True,
            "ok",
            (time.monotonic() - started) * 1000,
            {"api_remaining": daily.get("Remaining"), "api_max": daily.get("Max")},
        )

    def close(self) -> None:
        self.session.close()


def _tls_error(url: str, exc: Exception) -> PermanentError:
    """A certificate that does not verify is configuration, not an outage: no retry."""
    return PermanentError(
        SYSTEM,
        f"TLS verification of {url} failed ({redact(str(exc))[:200]}). If the server uses "
        "a private CA, point HUB_CA_BUNDLE at its PEM bundle; verification is never "
        "switched off.",
    )


def _bulk2(sf: Salesforce, obj_name: str) -> _Bulk2Client:
    """simple-salesforce's Bulk API 2.0 client for one object, step by step: its
    one-shot helpers poll twice per job and restart whole jobs, which costs API calls."""
    handler: SFBulk2Type = getattr(sf.bulk2, obj_name)
    return handler._client


def _to_csv(records: list[NativeRecord]) -> str:
    """Bulk API 2.0 CSV: one header over every field of the batch; a field a record
    lacks is an empty cell (left unchanged), None is ``#N/A`` (set to null)."""
    header: dict[str, None] = {}
    for record in records:
        header.update(dict.fromkeys(_clean(record)))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(header), restval="", lineterminator="\n")
    writer.writeheader()
    for record in records:
        writer.writerow({k: _csv_value(v) for k, v in _clean(record).items()})
    return buffer.getvalue()


def _clean(record: NativeRecord) -> NativeRecord:
    return {k: v for k, v in record.items() if k not in ("attributes", "SystemModstamp")}


def _csv_value(value: Any) -> Any:
    if value is None:
        return "#N/A"  # Bulk API 2.0's way of setting a field to null
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


def _sf_message(exc: SalesforceError) -> str:
    content = exc.content
    if isinstance(content, list) and content and isinstance(content[0], dict):
        first = content[0]
        return redact(f"{first.get('errorCode')}: {first.get('message')}")
    return redact(str(content)[:300])


#: How long Salesforce keeps deleted records in the recycle bin and its delete log
RECYCLE_BIN_DAYS = timedelta(days=15)
#: A window that starts this close to the log's edge is asked as starting at the edge
#: (Get Deleted refuses a start the log no longer covers, to the minute)
DELETE_LOG_MARGIN = timedelta(minutes=2)


def _parse_sf_datetime(value: str) -> datetime:
    text = value.replace("Z", "+00:00")
    if len(text) >= 5 and text[-5] in "+-" and text[-3] != ":":
        text = f"{text[:-2]}:{text[-2:]}"
    return datetime.fromisoformat(text).astimezone(UTC)


def _decode_cursor(cursor: str | None) -> tuple[datetime, str] | None:
    """(stamp, Id) of a stored cursor ``stamp|Id``; a stamp without an offset is UTC."""
    if not cursor:
        return None
    stamp, last_id = cursor.split("|", 1)
    moment = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return moment, last_id


def _id_order(record_id: str) -> tuple[int, int | str]:
    """An Id as the keyset compares it (a numeric key as a number: Salesforce Ids never
    are, so they compare as text, as ``Id >`` does)."""
    return (0, int(record_id)) if record_id.isdigit() else (1, record_id)


def _order(stored: tuple[datetime, str]) -> tuple[datetime, tuple[int, int | str]]:
    return stored[0], _id_order(stored[1])


def _position(record: NativeRecord, obj: SObject) -> tuple[datetime, tuple[int, int | str]]:
    return _parse_sf_datetime(str(record[obj.modstamp])), _id_order(str(record["Id"]))


def _soql_datetime(moment: datetime) -> str:
    """A SOQL datetime literal in milliseconds, Salesforce's stamp precision, rounded
    *up*: for whole-millisecond stamps ``s >= t`` and ``s < t`` then mean the same as
    against the exact moment, so a window bound never drops or adds a record."""
    moment = moment.astimezone(UTC)
    if moment.microsecond % 1000:
        moment += timedelta(microseconds=1000 - moment.microsecond % 1000)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def from_env(env: Mapping[str, str], objects: MappedObjects | None = None) -> SalesforceConnector:
    settings = read_settings(SalesforceSettings, env)
    return SalesforceConnector(settings, sobjects_from_mapped(objects or {}))
