"""Composite resources under ``/services/data/vXX.X/composite``: Composite Batch (independent
subrequests, ``haltOnError``), Composite (subrequests chained by ``@{referenceId.path}``
references) and sObject Tree (up to 200 new records, all or nothing).

Subrequests run through :meth:`RestApi.handle`, the same handlers a direct call reaches,
so a subrequest answers exactly what the resource answers on its own. Each of those
handlers commits its own unit of work; that is what Composite Batch and Composite with
``allOrNone: false`` do on Salesforce too (a failed subrequest leaves earlier ones saved).
Composite with ``allOrNone: true`` would need every subrequest's writes held back and
dropped together, which the per-request commits cannot do, so the sandbox refuses it
rather than answer as if it had rolled back. sObject Tree inserts its records in one
unit of work, committed only when every record is valid.

Error wordings Salesforce does not document are the emulator's; the codes and statuses
follow the documentation (400 for a malformed request before any subrequest runs, 412
``BATCH_PROCESSING_HALTED`` after a halt, 400 ``PROCESSING_HALTED`` for a reference that
cannot be resolved).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote, urlsplit

from sandbox.salesforce import rest
from sandbox.salesforce.errors import ApiError, RecordError, RecordRejected, retired_version
from sandbox.salesforce.repository import UnitOfWork

if TYPE_CHECKING:
    from sandbox.salesforce.schema import SObjectType

SUBREQUEST_LIMIT = 25
TREE_LIMIT = 200
BATCH_METHODS = ("GET", "POST", "PATCH", "PUT", "DELETE", "HEAD")
COMPOSITE_METHODS = ("GET", "POST", "PATCH", "PUT", "DELETE")
#: headers a Composite subrequest inherits from the top-level request (documented)
INHERITED_HEADERS = ("accept", "authorization", "content-type")
_VERSION = re.compile(r"^v(\d{1,3}\.\d)$")
_REFERENCE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_]*$")
_REFERENCE = re.compile(r"@\{([^{}]*)\}")
_REFERENCE_HEAD = re.compile(r"^([A-Za-z0-9_]+)(.*)$")
_PATH_STEP = re.compile(r"\.([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]")
HALTED_MESSAGE = "Batch processing halted: a previous subrequest failed and haltOnError is true"


@dataclass
class Outcome:
    """What one subrequest answered."""

    status: int
    body: Any
    headers: dict[str, str]

    @property
    def failed(self) -> bool:
        return self.status >= 400


def handle(api: rest.RestApi, call: rest.Call) -> rest.Reply:
    """``composite``, ``composite/batch`` and ``composite/tree/{SObject}``;
    ``composite/sobjects`` stays with :meth:`RestApi._collections`."""
    parts = call.parts
    if len(parts) == 1:
        if call.method == "GET":
            return _resource_list(call.version)
        _only(call, "GET", "POST")
        return _composite(api, call)
    if len(parts) == 2 and parts[1] == "batch":
        _only(call, "POST")
        return _batch(api, call)
    if len(parts) == 3 and parts[1] == "tree":
        _only(call, "POST")
        return _tree(api, rest.object_or_404(parts[2], api.schema), call)
    raise ApiError(404, "NOT_FOUND", "The requested resource does not exist")


def _only(call: rest.Call, *methods: str) -> None:
    if call.method not in methods:
        raise rest.method_not_allowed(call.method, ",".join(methods))


def _resource_list(version: str) -> rest.Reply:
    base = f"/services/data/v{version}/composite"
    return rest.Reply(200, {name: f"{base}/{name}" for name in ("tree", "batch", "sobjects")})


def _malformed(message: str) -> ApiError:
    """A request Salesforce refuses while reading it, before any subrequest runs."""
    return ApiError(400, "JSON_PARSER_ERROR", message)


def _payload(call: rest.Call, key: str) -> tuple[dict[str, Any], list[Any]]:
    body = call.json()
    if not isinstance(body, dict):
        raise _malformed(f"Expected a JSON object with '{key}'")
    items = body.get(key)
    if not isinstance(items, list):
        raise _malformed(f"'{key}' is a required field.")
    if len(items) > SUBREQUEST_LIMIT:
        raise ApiError(
            400,
            "LIMIT_EXCEEDED",
            f"{key} cannot contain more than {SUBREQUEST_LIMIT} subrequests; got {len(items)}",
        )
    return body, items


def _flag(body: dict[str, Any], name: str) -> bool:
    value = body.get(name, False)
    if not isinstance(value, bool):
        raise _malformed(f"'{name}' must be a boolean, not {json.dumps(value)}")
    return value


# -- running a subrequest ------------------------------------------------------------------
@dataclass
class Target:
    """A subrequest's url, split the way the app splits a request's path."""

    version: str
    parts: list[str]
    params: dict[str, str]


def _target(url: Any, *, full_path: bool) -> Target:
    """``v62.0/sobjects/...`` (batch) or ``/services/data/v62.0/sobjects/...``; anything
    else is a malformed ``url`` field."""
    if not isinstance(url, str) or not url:
        raise _malformed("'url' is a required field.")
    split = urlsplit(url)
    path = split.path
    if path.startswith("/services/data/"):
        path = path[len("/services/data/") :]
    elif full_path:
        raise _malformed(f"The url '{url}' must start with /services/data/vXX.X/")
    segments = [unquote(s) for s in path.strip("/").split("/") if s]
    match = _VERSION.match(segments[0]) if segments else None
    if match is None:
        raise _malformed(f"The url '{url}' does not name an API version (vXX.X)")
    params = dict(parse_qsl(split.query, keep_blank_values=True))
    return Target(match.group(1), segments[1:], params)


def _run(api: rest.RestApi, method: str, target: Target, body: Any) -> Outcome:
    """One subrequest through the REST handlers; a refusal becomes its error outcome."""
    try:
        _check_version(api, target.version)
        if target.parts[:1] == ["composite"] and target.parts[1:2] != ["sobjects"]:
            raise ApiError(
                400, "INVALID_INPUT", "A composite resource cannot be a subrequest of another"
            )
        raw = b"" if body is None else json.dumps(body).encode()
        reply = api.handle(rest.Call(method, target.parts, target.params, raw, target.version))
    except ApiError as exc:
        return Outcome(exc.status, exc.body(), {})
    headers = {k: v for k, v in reply.headers.items() if k.lower() != "content-length"}
    result = None if reply.status == 204 else reply.body
    if isinstance(result, bytes):
        result = result.decode()
    return Outcome(reply.status, result, headers)


def _check_version(api: rest.RestApi, version: str) -> None:
    """The versions the org serves, as the app checks them for a top-level request."""
    number = float(version)
    if number < float(api.settings.min_api_version):
        raise retired_version(version, api.settings.min_api_version)
    if number > float(api.settings.api_version):
        raise ApiError(404, "NOT_FOUND", "The requested resource does not exist")


# -- Composite Batch -----------------------------------------------------------------------
def _batch(api: rest.RestApi, call: rest.Call) -> rest.Reply:
    """Independent subrequests in order; each commits on its own. With ``haltOnError``
    the ones after a failure are not run and answer 412 BATCH_PROCESSING_HALTED."""
    body, items = _payload(call, "batchRequests")
    halt = _flag(body, "haltOnError")
    planned = [_batch_subrequest(item) for item in items]  # all checked before any runs
    results: list[dict[str, Any]] = []
    halted = False
    for method, target, rich_input in planned:
        if halted:
            error = {"errorCode": "BATCH_PROCESSING_HALTED", "message": HALTED_MESSAGE}
            results.append({"statusCode": 412, "result": [error]})
            continue
        outcome = _run(api, method, target, rich_input)
        results.append({"statusCode": outcome.status, "result": outcome.body})
        halted = halt and outcome.failed
    has_errors = any(r["statusCode"] >= 400 for r in results)
    return rest.Reply(200, {"hasErrors": has_errors, "results": results})


def _batch_subrequest(item: Any) -> tuple[str, Target, Any]:
    if not isinstance(item, dict):
        raise _malformed("Each entry of 'batchRequests' must be a JSON object")
    method = item.get("method")
    if method not in BATCH_METHODS:
        raise _malformed(
            f"Invalid method {json.dumps(method)}: expected one of {', '.join(BATCH_METHODS)}"
        )
    return str(method), _target(item.get("url"), full_path=False), item.get("richInput")


# -- Composite -----------------------------------------------------------------------------
@dataclass
class Subrequest:
    method: str
    url: str
    body: Any
    reference_id: str


def _composite(api: rest.RestApi, call: rest.Call) -> rest.Reply:
    """Subrequests in order, later ones reading earlier results through references; a
    subrequest that refers to a failed one is not run (PROCESSING_HALTED)."""
    body, items = _payload(call, "compositeRequest")
    if _flag(body, "allOrNone"):
        raise ApiError(
            400,
            "FEATURE_NOT_ENABLED",
            "allOrNone=true is not supported by the sandbox: its subrequests commit one by "
            "one and cannot be rolled back together. Send allOrNone=false, or use sObject "
            "Collections or sObject Tree for all-or-nothing writes",
        )
    _flag(body, "collateSubrequests")  # run in the order given, which collation allows
    subrequests = _composite_subrequests(items)
    done: dict[str, Outcome] = {}
    answers: list[dict[str, Any]] = []
    for sub in subrequests:
        outcome = _run_composite(api, sub, done)
        done[sub.reference_id] = outcome
        answers.append(
            {
                "body": outcome.body,
                "httpHeaders": outcome.headers,
                "httpStatusCode": outcome.status,
                "referenceId": sub.reference_id,
            }
        )
    return rest.Reply(200, {"compositeResponse": answers})


def _composite_subrequests(items: list[Any]) -> list[Subrequest]:
    """Every subrequest checked before the first runs: a bad one fails the whole request."""
    out: list[Subrequest] = []
    seen: set[str] = set()
    for item in items:
        if not isinstance(item, dict):
            raise _malformed("Each entry of 'compositeRequest' must be a JSON object")
        ref = item.get("referenceId")
        if not isinstance(ref, str) or not ref:
            raise _malformed("'referenceId' is a required field.")
        if not _REFERENCE_ID.match(ref):
            raise _malformed(
                f"Provided referenceId ('{ref}') must start with a letter or a number, and it "
                "can contain only letters, numbers and underscores ('_')."
            )
        if ref in seen:
            raise ApiError(400, "INVALID_INPUT", f"Duplicate referenceId provided: '{ref}'")
        seen.add(ref)
        method = item.get("method")
        if method not in COMPOSITE_METHODS:
            raise _malformed(
                f"Invalid method {json.dumps(method)} in subrequest '{ref}': expected one of "
                f"{', '.join(COMPOSITE_METHODS)}"
            )
        _check_headers(item.get("httpHeaders"), ref)
        _target(item.get("url"), full_path=True)  # the shape, before references resolve
        out.append(Subrequest(str(method), str(item["url"]), item.get("body"), ref))
    return out


def _check_headers(headers: Any, ref: str) -> None:
    if headers is None:
        return
    if not isinstance(headers, dict):
        raise _malformed(f"'httpHeaders' of subrequest '{ref}' must be a JSON object")
    inherited = [h for h in headers if str(h).lower() in INHERITED_HEADERS]
    if inherited:
        raise ApiError(
            400,
            "INVALID_INPUT",
            f"Subrequest '{ref}' may not set {', '.join(inherited)}: subrequests inherit it "
            "from the composite request",
        )


def _run_composite(api: rest.RestApi, sub: Subrequest, done: dict[str, Outcome]) -> Outcome:
    try:
        url = _resolve_text(sub.url, done)
        body = _resolve_body(sub.body, done)
        target = _target(url, full_path=True)
    except ApiError as exc:
        return Outcome(exc.status, exc.body(), {})
    outcome = _run(api, sub.method, target, body)
    created = outcome.status == 201 and isinstance(outcome.body, dict)
    if created and sub.method == "POST" and target.parts[:1] == ["sobjects"]:
        # Salesforce gives a created record's address in the subrequest's headers
        obj, record_id = target.parts[1], outcome.body["id"]
        location = f"/services/data/v{target.version}/sobjects/{obj}/{record_id}"
        outcome.headers.setdefault("Location", location)
    return outcome


# -- references ----------------------------------------------------------------------------
def _lookup(expression: str, done: dict[str, Outcome]) -> Any:
    """``ref.field``, ``ref.records[0].Id``...: a value of an earlier subrequest's JSON
    result. A reference to a failed, later or unknown subrequest, or to a path the result
    does not have, fails the referring subrequest with 400 PROCESSING_HALTED."""
    head = _REFERENCE_HEAD.match(expression)
    ref, path = (head.group(1), head.group(2)) if head else (expression, "")
    outcome = done.get(ref)
    value: Any = outcome.body if outcome is not None and not outcome.failed else None
    position = 0
    while value is not None and position < len(path):
        step = _PATH_STEP.match(path, position)
        if step is None:
            value = None
            break
        key, index = step.group(1), step.group(2)
        if key is not None:
            value = value.get(key) if isinstance(value, dict) else None
        else:
            listed = isinstance(value, list) and int(index) < len(value)
            value = value[int(index)] if listed else None
        position = step.end()
    if value is None or not path or isinstance(value, (dict, list)):
        raise ApiError(
            400,
            "PROCESSING_HALTED",
            f"Invalid reference specified. No value for {expression} found in {ref}",
        )
    return value


def _resolve_text(text: str, done: dict[str, Outcome]) -> str:
    def replace(match: re.Match[str]) -> str:
        value = _lookup(match.group(1), done)
        return json.dumps(value) if isinstance(value, bool) else str(value)

    return _REFERENCE.sub(replace, text)


def _resolve_body(value: Any, done: dict[str, Outcome]) -> Any:
    """References inside a body; a string that is one whole reference takes the value's
    JSON type (a number stays a number), one inside other text is spliced in as text."""
    if isinstance(value, str):
        whole = _REFERENCE.fullmatch(value)
        return _lookup(whole.group(1), done) if whole else _resolve_text(value, done)
    if isinstance(value, dict):
        return {k: _resolve_body(v, done) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve_body(v, done) for v in value]
    return value


# -- sObject Tree --------------------------------------------------------------------------
def _tree(api: rest.RestApi, obj: SObjectType, call: rest.Call) -> rest.Reply:
    """Up to 200 new records of the URI's type in one unit of work: any invalid record
    fails the request (400, its referenceId and errors) and nothing is saved."""
    body = call.json()
    records = body.get("records") if isinstance(body, dict) else None
    if not isinstance(records, list):
        raise _malformed("'records' is a required field.")
    if len(records) > TREE_LIMIT:
        raise ApiError(
            400,
            "LIMIT_EXCEEDED",
            f"An sObject Tree request can contain up to {TREE_LIMIT} records; got {len(records)}",
        )
    refs = [_tree_reference(record) for record in records]
    duplicates = [r for r in refs if refs.count(r) > 1]
    if duplicates:
        error = RecordError("INVALID_INPUT", "Duplicate ReferenceId provided in the request")
        failed = [{"referenceId": r, "errors": [error.as_collection()]} for r in duplicates]
        return rest.Reply(400, {"hasErrors": True, "results": failed})
    results: list[dict[str, Any]] = []
    with api.repo.lock:
        uow = UnitOfWork(api.repo)
        for ref, record in zip(refs, records, strict=True):
            try:
                results.append({"referenceId": ref, "id": _tree_insert(uow, obj, record)})
            except RecordRejected as exc:
                errors = [e.as_collection() for e in exc.errors]
                failed = [{"referenceId": ref, "errors": errors}]
                return rest.Reply(400, {"hasErrors": True, "results": failed})
        uow.commit()
    return rest.Reply(201, {"hasErrors": False, "results": results})


def _tree_reference(record: Any) -> str:
    attributes = record.get("attributes") if isinstance(record, dict) else None
    ref = attributes.get("referenceId") if isinstance(attributes, dict) else None
    if not isinstance(ref, str) or not ref:
        raise _malformed("Each record needs attributes with 'type' and 'referenceId'")
    if not _REFERENCE_ID.match(ref):
        raise _malformed(
            f"Provided referenceId ('{ref}') must start with a letter or a number, and it can "
            "contain only letters, numbers and underscores ('_')."
        )
    nested = [k for k, v in record.items() if isinstance(v, dict) and "records" in v]
    if nested:
        raise ApiError(
            400,
            "FEATURE_NOT_ENABLED",
            f"Child records ({', '.join(nested)} of '{ref}') are not supported by the "
            "sandbox's sObject Tree: its schema has no child relationships. Send the "
            "top-level records, then the children with their parent ids",
        )
    return ref


def _tree_insert(uow: UnitOfWork, obj: SObjectType, record: dict[str, Any]) -> str:
    kind = record["attributes"].get("type")
    if not isinstance(kind, str) or kind.lower() != obj.name.lower():
        raise RecordRejected(
            RecordError(
                "INVALID_TYPE",
                f"The record type {json.dumps(kind)} does not match the sObject of the URI, "
                f"{obj.name}",
            )
        )
    return uow.insert(obj, {k: v for k, v in record.items() if k != "attributes"})
