"""REST API resources under ``/services/data/vXX.X/``: versions, resources, limits,
describe, SOQL query / queryAll with cursors, sObject rows (CRUD, upsert by external id),
the replication resources (:mod:`sandbox.salesforce.replication`) and sObject Collections.
Bulk API 2.0 lives in :mod:`sandbox.salesforce.bulk`.

Handlers are synchronous (the store is SQLite) and return :class:`Reply`; the app runs
them in a worker thread and adds the headers every API response carries."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from sandbox.faults import FaultState
from sandbox.salesforce import composite, ids, query, replication, soql, sosl
from sandbox.salesforce.errors import (
    NOT_FOUND_MESSAGE,
    ApiError,
    RecordError,
    RecordRejected,
    not_found,
)
from sandbox.salesforce.repository import Repository, UnitOfWork
from sandbox.salesforce.schema import DEFAULT_SCHEMA, Field, Schema, SObjectType
from sandbox.salesforce.settings import SalesforceSettings
from sandbox.store import DocumentStore

COLLECTION_LIMIT = 200
ROLLED_BACK = RecordError(
    "ALL_OR_NONE_OPERATION_ROLLED_BACK",
    "Record rolled back because not all records were valid and the request was using "
    "AllOrNone header",
)
JSON = "application/json;charset=UTF-8"


@dataclass
class Reply:
    status: int
    body: Any = None  # JSON-able, or bytes/str already rendered
    headers: dict[str, str] = field(default_factory=dict)
    media_type: str = JSON


@dataclass
class Call:
    """One API request, as the handlers see it."""

    method: str
    parts: list[str]  # path segments after /services/data/vXX.X/
    params: dict[str, str]
    body: bytes
    version: str

    def json(self) -> Any:
        """The body as JSON; a body Salesforce cannot read is a 400 JSON_PARSER_ERROR."""
        if not self.body:
            return None
        try:
            value = json.loads(self.body)
        except ValueError as exc:
            raise ApiError(400, "JSON_PARSER_ERROR", f"Unexpected character: {exc}") from None
        lone = _lone_surrogate(value)
        if lone is not None:
            # JSON's syntax lets "\ud800" through, but it is half a character, no text:
            # Salesforce takes only proper UTF-8 and answers a body it cannot read with
            # 400 (stored, it failed every later query of the record with a 500)
            raise ApiError(
                400,
                "JSON_PARSER_ERROR",
                f"Invalid UTF-16 surrogate \\u{ord(lone):04x} without its pair in a JSON string",
            )
        return value


_SURROGATE = re.compile(r"[\ud800-\udfff]")


def _lone_surrogate(value: Any) -> str | None:
    """The first unpaired UTF-16 surrogate in any string (key or value) of ``value``:
    ``json.loads`` joins a proper pair into one character, so any surrogate left is
    alone."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            found = _SURROGATE.search(item)
            if found:
                return found.group()
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return None


def release_label(version: str) -> str:
    """``62.0`` -> ``Winter '25`` (three releases a year, Spring '24 was 60.0)."""
    k = int(float(version)) - 60
    season = ("Spring", "Summer", "Winter")[k % 3]
    year = 24 + k // 3 + (1 if season == "Winter" else 0)
    return f"{season} '{year:02d}"


def versions(newest: str, oldest: str = "31.0") -> list[dict[str, str]]:
    top = int(float(newest))
    return [
        {"label": release_label(f"{v}.0"), "url": f"/services/data/v{v}.0", "version": f"{v}.0"}
        for v in range(int(float(oldest)), top + 1)
    ]


def method_not_allowed(method: str, allowed: str) -> ApiError:
    return ApiError(
        405,
        "METHOD_NOT_ALLOWED",
        f"HTTP Method '{method}' not allowed. Allowed are {allowed}",
    )


def object_or_404(name: str, schema: Schema = DEFAULT_SCHEMA) -> SObjectType:
    obj = schema.sobject(name)
    if obj is None:
        raise ApiError(404, "NOT_FOUND", NOT_FOUND_MESSAGE)
    return obj


# -- describe ------------------------------------------------------------------------------
_SOAP = {
    "id": "tns:ID", "reference": "tns:ID", "boolean": "xsd:boolean", "currency": "xsd:double",
    "double": "xsd:double", "percent": "xsd:double", "int": "xsd:int", "date": "xsd:date",
    "datetime": "xsd:dateTime",
}  # fmt: skip
_DESCRIBE_TYPE = {"datetime": "datetime"}


def describe_field(f: Field) -> dict[str, Any]:
    return {
        "name": f.name,
        "label": f.display_label,
        "type": _DESCRIBE_TYPE.get(f.type, f.type),
        "soapType": _SOAP.get(f.type, "xsd:string"),
        "length": f.length,
        "byteLength": f.length * 3,
        "precision": f.precision,
        "scale": f.scale,
        "digits": 9 if f.type == "int" else 0,
        "nillable": f.nillable,
        "createable": f.createable,
        "updateable": f.updateable,
        "defaultedOnCreate": f.default is not None or f.name in ("OwnerId", "IsDeleted"),
        "defaultValue": f.default,
        "externalId": f.external_id,
        "unique": f.unique,
        "idLookup": f.name == "Id" or f.external_id,
        "custom": f.custom,
        "calculated": False,
        "autoNumber": f.auto_number,
        "filterable": True,
        "sortable": f.type != "textarea",
        "nameField": f.name == "Name",
        "picklistValues": f.picklist.entries() if f.picklist else [],
        "restrictedPicklist": bool(f.picklist and f.picklist.restricted),
        "dependentPicklist": bool(f.picklist and f.picklist.controller),
        "controllerName": f.picklist.controller if f.picklist else None,
        "referenceTo": list(f.reference_to),
        "relationshipName": f.relationship_name,
        "groupable": f.groupable,
        "aggregatable": f.aggregatable,
        **_DESCRIBE_CONSTANTS,
        "htmlFormatted": f.type == "textarea" and f.length > 255,
        "permissionable": f.custom and f.nillable,
        "polymorphicForeignKey": len(f.reference_to) > 1,
        "namePointing": len(f.reference_to) > 1,
        "searchPrefilterable": f.type == "reference",
        "extraTypeInfo": "plaintextarea" if f.type == "textarea" else None,
    }


#: Field describe properties that hold the same value for every field the emulator has (no
#: formulas, encryption, geolocation or help text here); clients read them all the same.
_DESCRIBE_CONSTANTS: dict[str, Any] = {
    "aiPredictionField": False,
    "calculatedFormula": None,
    "cascadeDelete": False,
    "caseSensitive": False,
    "compoundFieldName": None,
    "defaultValueFormula": None,
    "deprecatedAndHidden": False,
    "displayLocationInDecimal": False,
    "encrypted": False,
    "filteredLookupInfo": None,
    "formulaTreatNullNumberAsZero": False,
    "highScaleNumber": False,
    "inlineHelpText": None,
    "mask": None,
    "maskType": None,
    "queryByDistance": False,
    "referenceTargetField": None,
    "relationshipOrder": None,
    "restrictedDelete": False,
    "writeRequiresMasterRead": False,
}


def object_urls(obj: SObjectType, version: str) -> dict[str, str]:
    base = f"/services/data/v{version}/sobjects/{obj.name}"
    return {"sobject": base, "describe": f"{base}/describe", "rowTemplate": f"{base}/{{ID}}"}


def object_summary(obj: SObjectType, version: str) -> dict[str, Any]:
    writable = obj.name not in ("User", "Organization")
    return {
        "name": obj.name,
        "label": obj.label,
        "labelPlural": obj.label + "s",
        "keyPrefix": obj.key_prefix,
        "custom": obj.custom,
        "createable": writable,
        "updateable": writable,
        "deletable": writable,
        "queryable": True,
        "searchable": True,
        "urls": object_urls(obj, version),
    }


def describe_object(
    obj: SObjectType, version: str, schema: Schema = DEFAULT_SCHEMA
) -> dict[str, Any]:
    """The object's describe; ``childRelationships`` is the list SOQL subqueries resolve
    their FROM against (``Schema.child_relationships``), so the two cannot disagree."""
    children: list[dict[str, Any]] = [
        {
            "cascadeDelete": False,
            "childSObject": c.child.name,
            "deprecatedAndHidden": False,
            "field": c.field.name,
            "junctionIdListNames": [],
            "junctionReferenceTo": [],
            "relationshipName": c.name,
            "restrictedDelete": False,
        }
        for c in schema.child_relationships(obj.name)
    ]
    return {
        **object_summary(obj, version),
        "fields": [describe_field(f) for f in obj.fields],
        "childRelationships": children,
    }


# -- records -------------------------------------------------------------------------------
def render_record(
    obj: SObjectType, doc: dict[str, Any], version: str, only: list[Field] | None = None
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "attributes": {
            "type": obj.name,
            "url": f"/services/data/v{version}/sobjects/{obj.name}/{doc['Id']}",
        }
    }
    for f in only or obj.fields:
        out[f.name] = doc.get(f.name)
    return out


def select_fields(obj: SObjectType, raw: str | None) -> list[Field] | None:
    if not raw:
        return None
    chosen = []
    for name in raw.split(","):
        f = obj.field(name.strip())
        if f is None:
            raise ApiError(
                400,
                "INVALID_FIELD",
                f"No such column '{name.strip()}' on sobject of type {obj.name}",
            )
        chosen.append(f)
    return chosen


def save_result(record_id: str | None, created: bool | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"id": record_id, "success": True, "errors": []}
    if created is not None:
        out["created"] = created
    return out


def failed_result(errors: list[RecordError], record_id: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"success": False, "errors": [e.as_collection() for e in errors]}
    if record_id:
        out["id"] = record_id
    return out


class RestApi:
    """Every REST resource except Bulk API 2.0 jobs."""

    def __init__(
        self,
        store: DocumentStore,
        faults: FaultState,
        settings: SalesforceSettings,
        repo: Repository,
        limits: Callable[[], dict[str, Any]],
        schema: Schema = DEFAULT_SCHEMA,
    ) -> None:
        self.store = store
        self.faults = faults
        self.settings = settings
        self.repo = repo
        self.limits = limits
        self.schema = schema
        self.cursors = query.Cursors()

    def handle(self, call: Call) -> Reply:
        parts = call.parts
        head = parts[0] if parts else ""
        if not parts:
            return self._resources(call)
        if head == "limits" and len(parts) == 1:
            self._only(call, "GET")
            return Reply(200, self.limits())
        if head == "sobjects":
            return self._sobjects(call)
        if head in ("query", "queryAll"):
            self._only(call, "GET")
            return self._query(call, include_deleted=head == "queryAll")
        if head == "search" and len(parts) == 1:
            self._only(call, "GET")
            return self._search(call)
        if head == "composite" and len(parts) >= 2 and parts[1] == "sobjects":
            return self._collections(call)
        if head == "composite":
            return composite.handle(self, call)
        raise not_found()

    @staticmethod
    def _only(call: Call, *methods: str) -> None:
        if call.method not in methods:
            raise method_not_allowed(call.method, ",".join(methods))

    def _resources(self, call: Call) -> Reply:
        self._only(call, "GET")
        base = f"/services/data/v{call.version}"
        names = ["sobjects", "query", "queryAll", "search", "limits", "composite", "jobs"]
        return Reply(200, {name: f"{base}/{name}" for name in names})

    # -- sobjects --------------------------------------------------------------------------
    def _sobjects(self, call: Call) -> Reply:
        parts = call.parts
        v = call.version
        if len(parts) == 1:
            self._only(call, "GET")
            return Reply(
                200,
                {
                    "encoding": "UTF-8",
                    "maxBatchSize": COLLECTION_LIMIT,
                    "sobjects": [object_summary(o, v) for o in self.schema.objects.values()],
                },
            )
        obj = object_or_404(parts[1], self.schema)
        if len(parts) == 2:
            if call.method == "GET":
                return Reply(200, {"objectDescribe": object_summary(obj, v), "recentItems": []})
            self._only(call, "GET", "POST")
            return self._create(obj, call)
        if len(parts) == 3 and parts[2] == "describe":
            self._only(call, "GET")
            return Reply(200, describe_object(obj, v, self.schema))
        if len(parts) > 3 and parts[2] == "describe":
            # layouts, compact layouts, quick actions...: not emulated, and not an
            # external-id lookup on a field called "describe"
            raise not_found()
        if len(parts) == 3 and parts[2] in replication.RESOURCES:
            self._only(call, "GET")
            now = dt.datetime.now(dt.UTC)
            since = partial(self.repo.stamped_since, obj)
            if parts[2] == "updated":
                return Reply(200, replication.updated(since, call.params, now))
            purged = self.repo.purged(obj)
            return Reply(200, replication.deleted(since, call.params, now, purged))
        if len(parts) == 3:
            return self._row(obj, parts[2], call)
        if len(parts) == 4:
            return self._row_by_external(obj, parts[2], parts[3], call)
        raise not_found()

    def _create(self, obj: SObjectType, call: Call) -> Reply:
        values = call.json()
        if not isinstance(values, dict):
            raise ApiError(400, "JSON_PARSER_ERROR", "Expected a JSON object for the record")
        try:
            with self.repo.lock:
                uow = UnitOfWork(self.repo)
                record_id = uow.insert(obj, _drop_attributes(values))
                uow.commit()
        except RecordRejected as exc:
            return _rejected(exc)
        return Reply(201, save_result(record_id))

    def _row(self, obj: SObjectType, record_id: str, call: Call) -> Reply:
        full = ids.normalize(record_id)
        if call.method == "GET":
            doc = self.repo.get(obj, full) if full else None
            if doc is None or full is None or full[:3] != obj.key_prefix:
                raise not_found()
            if doc.get("IsDeleted"):
                raise ApiError(404, "ENTITY_IS_DELETED", "entity is deleted")
            only = select_fields(obj, call.params.get("fields"))
            return Reply(200, render_record(obj, doc, call.version, only))
        if call.method == "PATCH":
            values = call.json()
            if not isinstance(values, dict):
                raise ApiError(400, "JSON_PARSER_ERROR", "Expected a JSON object for the record")
            try:
                with self.repo.lock:
                    uow = UnitOfWork(self.repo)
                    uow.update(obj, record_id, _drop_attributes(values))
                    uow.commit()
            except RecordRejected as exc:
                return _rejected(exc)
            return Reply(204)
        if call.method == "DELETE":
            try:
                with self.repo.lock:
                    uow = UnitOfWork(self.repo)
                    uow.delete(obj, record_id)
                    uow.commit()
            except RecordRejected as exc:
                return _rejected(exc)
            return Reply(204)
        raise method_not_allowed(call.method, "GET,PATCH,DELETE")

    def _row_by_external(self, obj: SObjectType, field_name: str, value: str, call: Call) -> Reply:
        f = obj.field(field_name)
        if f is None or not (f.external_id or f.name == "Id"):
            raise ApiError(
                404,
                "NOT_FOUND",
                f"Provided external ID field does not exist or is not accessible: {field_name}",
            )
        if call.method == "GET":
            matches = self.repo.by_external(obj, f, value)
            if not matches:
                raise not_found()
            if len(matches) > 1:
                return _multiple(obj, matches, call.version)
            only = select_fields(obj, call.params.get("fields"))
            return Reply(200, render_record(obj, matches[0], call.version, only))
        if call.method == "DELETE":
            matches = self.repo.by_external(obj, f, value)
            if not matches:
                raise not_found()
            if len(matches) > 1:
                return _multiple(obj, matches, call.version)
            return self._row(obj, matches[0]["Id"], Call("DELETE", [], {}, b"", call.version))
        if call.method in ("PATCH", "POST"):
            values = call.json() or {}
            if not isinstance(values, dict):
                raise ApiError(400, "JSON_PARSER_ERROR", "Expected a JSON object for the record")
            update_only = call.params.get("updateOnly", "").lower() == "true"
            try:
                with self.repo.lock:
                    uow = UnitOfWork(self.repo)
                    if update_only and not uow.by_external(obj, f, value):
                        raise RecordRejected(
                            RecordError("NOT_FOUND", NOT_FOUND_MESSAGE), status=404
                        )
                    record_id, created = uow.upsert(obj, f.name, value, _drop_attributes(values))
                    uow.commit()
            except RecordRejected as exc:
                if exc.status == 300:
                    return _multiple(obj, self.repo.by_external(obj, f, value), call.version)
                return _rejected(exc)
            if created:
                return Reply(201, save_result(record_id, True))
            if float(call.version) >= 46.0:
                return Reply(200, save_result(record_id, False))
            return Reply(204)
        raise method_not_allowed(call.method, "GET,PATCH,DELETE")

    # -- query -----------------------------------------------------------------------------
    def _query(self, call: Call, *, include_deleted: bool) -> Reply:
        batch = self.settings.query_batch_size
        if len(call.parts) == 2:
            locator, _, offset_text = call.parts[1].rpartition("-")
            if not locator or not offset_text.isdigit():
                raise ApiError(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
            cursor = self.cursors.get(locator)
            if cursor.result.query.grouping is not None:
                raise ApiError(
                    400,
                    "INVALID_QUERY_LOCATOR",
                    "Aggregate query does not support queryMore(), use LIMIT to restrict the "
                    "results to a single batch",
                )
            return self._page(cursor, locator, int(offset_text), batch, call)
        if len(call.parts) != 1:
            raise not_found()
        text = call.params.get("q")
        if text is None:
            raise ApiError(400, "MALFORMED_QUERY", "A query string has to be specified")
        parsed = soql.parse(text, self.schema)
        result = query.execute(self.store, parsed, include_deleted=include_deleted)
        if parsed.count:
            return Reply(200, {"totalSize": result.total, "done": True, "records": []})
        cursor = query.Cursor(result, include_deleted)
        locator = self.cursors.open(cursor) if result.total > batch else ""
        return self._page(cursor, locator, 0, batch, call)

    def _page(
        self, cursor: query.Cursor, locator: str, offset: int, batch: int, call: Call
    ) -> Reply:
        rs = cursor.result
        end = min(rs.total, offset + batch)
        body: dict[str, Any] = {"totalSize": rs.total, "done": end >= rs.total}
        if end < rs.total:
            endpoint = "queryAll" if cursor.include_deleted else "query"
            body["nextRecordsUrl"] = f"/services/data/v{call.version}/{endpoint}/{locator}-{end}"
        body["records"] = query.rest_records(rs, offset, end, call.version)
        return Reply(200, body)

    def _search(self, call: Call) -> Reply:
        """SOSL (:mod:`sandbox.salesforce.sosl`): ``{"searchRecords": [...]}``."""
        text = call.params.get("q")
        if not text:
            raise sosl.malformed("A search string has to be specified")
        search = sosl.parse(text, self.schema)
        records = sosl.run(self.store, search, self.schema, call.version)
        return Reply(200, {"searchRecords": records})

    # -- sObject Collections ---------------------------------------------------------------
    def _collections(self, call: Call) -> Reply:
        parts = call.parts
        if len(parts) == 4 and call.method == "PATCH":
            obj = object_or_404(parts[2], self.schema)
            f = obj.field(parts[3])
            if f is None or not (f.external_id or f.name == "Id"):
                raise ApiError(
                    400,
                    "INVALID_FIELD",
                    f"Field name provided, {parts[3]} is not an External ID or indexed field "
                    f"for {obj.name}",
                )
            return self._collection_write(call, "upsert", obj, f)
        if len(parts) != 2:
            raise not_found()
        if call.method == "POST":
            return self._collection_write(call, "insert")
        if call.method == "PATCH":
            return self._collection_write(call, "update")
        if call.method == "DELETE":
            return self._collection_delete(call)
        raise method_not_allowed(call.method, "POST,PATCH,DELETE")

    def _collection_write(
        self, call: Call, op: str, obj: SObjectType | None = None, ext: Field | None = None
    ) -> Reply:
        payload = call.json()
        if not isinstance(payload, dict) or not isinstance(payload.get("records"), list):
            raise ApiError(
                400, "JSON_PARSER_ERROR", 'Expected {"allOrNone": ..., "records": [...]}'
            )
        records = payload["records"]
        all_or_none = bool(payload.get("allOrNone", False))
        _check_size(len(records))
        results: list[dict[str, Any]] = []
        failed = False
        with self.repo.lock:
            uow = UnitOfWork(self.repo)
            for record in records:
                try:
                    target = _record_type(record, obj, self.schema)
                    values = _drop_attributes(record)
                    if op == "insert":
                        results.append(save_result(uow.insert(target, values)))
                    elif op == "update":
                        record_id = values.get("Id")
                        if not record_id:
                            raise RecordRejected(
                                RecordError(
                                    "MISSING_ARGUMENT", "Id not specified in an update call", ["Id"]
                                )
                            )
                        results.append(save_result(uow.update(target, str(record_id), values)))
                    else:
                        assert ext is not None
                        value = next(
                            (v for k, v in values.items() if k.lower() == ext.name.lower()), None
                        )
                        record_id, created = uow.upsert(target, ext.name, value, values)
                        results.append(save_result(record_id, created))
                except RecordRejected as exc:
                    failed = True
                    given = record.get("Id") if isinstance(record, dict) else None
                    results.append(failed_result(exc.errors, given if op == "update" else None))
                    if all_or_none:
                        continue
            if failed and all_or_none:
                results = [r if not r["success"] else failed_result([ROLLED_BACK]) for r in results]
            else:
                uow.commit()
        return Reply(200, results)

    def _collection_delete(self, call: Call) -> Reply:
        raw = call.params.get("ids", "")
        record_ids = [i for i in raw.split(",") if i]
        all_or_none = call.params.get("allOrNone", "false").lower() == "true"
        _check_size(len(record_ids))
        results: list[dict[str, Any]] = []
        failed = False
        with self.repo.lock:
            uow = UnitOfWork(self.repo)
            for record_id in record_ids:
                full = ids.normalize(record_id)
                obj = self.schema.by_prefix(full[:3]) if full else None
                try:
                    if obj is None:
                        raise RecordRejected(
                            RecordError("MALFORMED_ID", f"malformed id {record_id}", [])
                        )
                    results.append(save_result(uow.delete(obj, record_id)))
                except RecordRejected as exc:
                    failed = True
                    results.append(failed_result(exc.errors, record_id))
            if failed and all_or_none:
                results = [
                    r if not r["success"] else {**failed_result([ROLLED_BACK]), "id": r["id"]}
                    for r in results
                ]
            else:
                uow.commit()
        return Reply(200, results)


def _check_size(count: int) -> None:
    if count > COLLECTION_LIMIT:
        raise ApiError(
            400,
            "EXCEEDED_ID_LIMIT",
            f"record limit reached. cannot submit more than {COLLECTION_LIMIT} records into "
            "this call",
        )


def _record_type(record: Any, default: SObjectType | None, schema: Schema) -> SObjectType:
    if not isinstance(record, dict):
        raise RecordRejected(RecordError("INVALID_INPUT", "Each record must be a JSON object"))
    attributes = record.get("attributes") or {}
    name = attributes.get("type") if isinstance(attributes, dict) else None
    if not name:
        if default is not None:
            return default
        raise RecordRejected(
            RecordError(
                "INVALID_TYPE",
                "No SObject Type defined in the record: attributes.type is required",
            )
        )
    obj = schema.sobject(str(name))
    if obj is None or (default is not None and obj.name != default.name):
        raise RecordRejected(
            RecordError("INVALID_TYPE", f"sObject type '{name}' is not supported.")
        )
    return obj


def _drop_attributes(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if k != "attributes"}


def _rejected(exc: RecordRejected) -> Reply:
    return Reply(exc.status, [e.as_rest() for e in exc.errors])


def _multiple(obj: SObjectType, matches: list[dict[str, Any]], version: str) -> Reply:
    return Reply(300, [f"/services/data/v{version}/sobjects/{obj.name}/{m['Id']}" for m in matches])
