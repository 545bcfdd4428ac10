"""Bulk API 1.0 with JSON content, under ``/services/async/<version>/``: the classic jobs
and batches simple-salesforce's ``sf.bulk.<Object>`` drives.

``POST job`` creates an ``Open`` job (``contentType`` must be JSON: CSV, XML and the
zip types are not emulated); ``POST job/<id>`` ``{"state": "Closed"|"Aborted"}`` closes
or aborts it. Each ``POST job/<id>/batch`` is processed synchronously: the answer says
``Queued`` (what Salesforce answers), the next look already sees ``Completed`` (or
``Failed`` with ``stateMessage``), so a client polling the batch never has to wait. A DML
batch is a JSON array of at most 10,000 records; every record goes through the REST API's
write rules (:func:`sandbox.salesforce.bulk.apply_record`), one unit of work per batch so
a record's failure never touches the others. A query batch is the SOQL text; its rows are
kept behind result ids of at most ``RESULT_ROWS`` rows each and rendered on request as
JSON records with ``attributes``, date and datetime values as epoch milliseconds, as Bulk
API 1.0 sends them. Aggregates, OFFSET and nested (parent-to-child) queries fail the
batch, as Bulk API 1.0 refuses them.

Errors are Bulk API 1.0's ``{"exceptionCode", "exceptionMessage"}`` with its documented
codes (``InvalidSessionId``, ``InvalidJob``, ``InvalidJobState``, ``InvalidBatch``,
``InvalidOperation``, ``InvalidUrl``...); the codes and statuses are Salesforce's, the
wording of most messages the emulator's. Jobs live in memory (the newest ``bulk.MAX_JOBS``).
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from sandbox.salesforce import ids, query, soql
from sandbox.salesforce.bulk import JobRegistry, apply_record
from sandbox.salesforce.errors import ApiError, RecordRejected
from sandbox.salesforce.repository import Repository, UnitOfWork
from sandbox.salesforce.rest import JSON, Call, Reply
from sandbox.salesforce.schema import DEFAULT_SCHEMA, Schema, SObjectType
from sandbox.salesforce.settings import SalesforceSettings
from sandbox.salesforce.values import format_datetime, parse_date, parse_datetime
from sandbox.store import DocumentStore

MAX_BATCH_RECORDS = 10_000
#: rows per query result id: Salesforce splits a big result into several files, so a
#: client must follow every id; the emulator splits by rows (Salesforce by size)
RESULT_ROWS = 50_000
DML_OPERATIONS = ("insert", "update", "upsert", "delete", "hardDelete")
QUERY_OPERATIONS = ("query", "queryAll")
CONCURRENCY = {"Parallel": "Parallel", "Serial": "Serial", 0: "Parallel", 1: "Serial"}
TEXT = "text/plain;charset=UTF-8"


class BulkV1Error(ApiError):
    """A request-level failure rendered as Bulk API 1.0's ``{exceptionCode,
    exceptionMessage}`` object (not the REST API's list)."""

    def body(self) -> Any:
        return {"exceptionCode": self.code, "exceptionMessage": self.message}


def as_bulk_v1(exc: ApiError) -> BulkV1Error:
    """A shared ApiError (session, API budget, version, JSON body) in Bulk API 1.0's shape:
    an invalid session is ``InvalidSessionId`` with 400, as Bulk API 1.0 answers it
    (the REST API's 401 ``INVALID_SESSION_ID``)."""
    if isinstance(exc, BulkV1Error):
        return exc
    if exc.code == "INVALID_SESSION_ID":
        return BulkV1Error(400, "InvalidSessionId", "Invalid session id")
    if exc.code == "REQUEST_LIMIT_EXCEEDED":
        return BulkV1Error(exc.status, "ExceededQuota", exc.message)
    if exc.code in ("NOT_FOUND", "UNSUPPORTED_API_VERSION"):
        return BulkV1Error(exc.status, "InvalidUrl", exc.message)
    return BulkV1Error(exc.status, "ClientInputError", exc.message)  # e.g. unreadable JSON


def _now() -> str:
    return format_datetime(dt.datetime.now(dt.UTC))


class _BatchFailed(Exception):
    """A batch Salesforce accepts but cannot process: it ends ``Failed``, the message
    in ``stateMessage``."""


@dataclass
class Batch:
    id: str
    job_id: str
    created: str
    request: bytes
    state: str = "Queued"
    state_message: str | None = None
    modstamp: str = ""
    processed: int = 0
    failed: int = 0
    processing_ms: int = 0
    results: list[dict[str, Any]] = field(default_factory=list)  # DML, in input order
    rows: query.ResultSet | None = None  # query
    result_ids: list[str] = field(default_factory=list)

    def info(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "apexProcessingTime": 0,
            "apiActiveProcessingTime": self.processing_ms,
            "createdDate": self.created,
            "id": self.id,
            "jobId": self.job_id,
            "numberRecordsFailed": self.failed,
            "numberRecordsProcessed": self.processed,
            "state": self.state,
            "systemModstamp": self.modstamp or self.created,
            "totalProcessingTime": self.processing_ms,
        }
        if self.state_message:
            out["stateMessage"] = self.state_message
        return out


@dataclass
class Job:
    id: str
    operation: str
    obj: SObjectType
    external_id: str | None
    concurrency: str
    version: str
    created: str
    user_id: str
    state: str = "Open"
    modstamp: str = ""
    batches: OrderedDict[str, Batch] = field(default_factory=OrderedDict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def info(self) -> dict[str, Any]:
        batches = list(self.batches.values())

        def count(state: str) -> int:
            return sum(1 for b in batches if b.state == state)

        out: dict[str, Any] = {
            "apexProcessingTime": 0,
            "apiActiveProcessingTime": sum(b.processing_ms for b in batches),
            "apiVersion": float(self.version),
            "concurrencyMode": self.concurrency,
            "contentType": "JSON",
            "createdById": self.user_id,
            "createdDate": self.created,
            "id": self.id,
            "numberBatchesCompleted": count("Completed"),
            "numberBatchesFailed": count("Failed"),
            "numberBatchesInProgress": count("InProgress"),
            "numberBatchesQueued": count("Queued"),
            "numberBatchesTotal": len(batches),
            "numberRecordsFailed": sum(b.failed for b in batches),
            "numberRecordsProcessed": sum(b.processed for b in batches),
            "numberRetries": 0,
            "object": self.obj.name,
            "operation": self.operation,
            "state": self.state,
            "systemModstamp": self.modstamp or self.created,
            "totalProcessingTime": sum(b.processing_ms for b in batches),
        }
        if self.external_id:
            out["externalIdFieldName"] = self.external_id
        return out


def _invalid_url() -> BulkV1Error:
    return BulkV1Error(404, "InvalidUrl", "The requested resource does not exist")


def _only(call: Call, *methods: str) -> None:
    if call.method not in methods:
        raise BulkV1Error(
            405,
            "InvalidUrl",
            f"HTTP Method '{call.method}' not allowed. Allowed are {','.join(methods)}",
        )


class BulkV1Api:
    """The ``/services/async/<version>/job...`` resources; handlers are synchronous and
    return :class:`Reply` (the app runs them in a worker thread)."""

    def __init__(
        self,
        store: DocumentStore,
        repo: Repository,
        settings: SalesforceSettings,
        schema: Schema = DEFAULT_SCHEMA,
    ) -> None:
        self.store = store
        self.repo = repo
        self.settings = settings
        self.schema = schema
        self._jobs: JobRegistry[Job] = JobRegistry()

    # -- routing ---------------------------------------------------------------------------
    def handle(self, call: Call) -> Reply:
        parts = call.parts  # ["job", id?, "batch"?, batch id?, "result"|"request"?, ...]
        if not parts:
            raise _invalid_url()
        if parts[0] != "job":
            raise BulkV1Error(400, "InvalidOperation", f"Invalid operation in the URI: {parts[0]}")
        if len(parts) == 1:
            _only(call, "POST")
            return self._create(call)
        job = self._job(parts[1])
        if len(parts) == 2:
            _only(call, "GET", "POST")
            return Reply(200, job.info()) if call.method == "GET" else self._set_state(job, call)
        if parts[2] != "batch":
            raise _invalid_url()
        if len(parts) == 3:
            _only(call, "GET", "POST")
            if call.method == "POST":
                return self._add_batch(job, call)
            with job.lock:
                return Reply(200, {"batchInfo": [b.info() for b in job.batches.values()]})
        _only(call, "GET")
        batch = self._batch(job, parts[3])
        rest = parts[4:]
        if not rest:
            return Reply(200, batch.info())
        if rest == ["request"]:
            media = TEXT if job.operation in QUERY_OPERATIONS else JSON
            return Reply(200, batch.request, media_type=media)
        if rest[0] == "result" and len(rest) <= 2:
            return self._results(job, batch, rest[1] if len(rest) == 2 else None)
        raise _invalid_url()

    def _job(self, job_id: str) -> Job:
        job = self._jobs.get(job_id)
        if job is None:
            raise BulkV1Error(400, "InvalidJob", f"Invalid job id: {job_id}")
        return job

    def _batch(self, job: Job, batch_id: str) -> Batch:
        with job.lock:
            batch = job.batches.get(ids.normalize(batch_id) or batch_id)
        if batch is None:
            raise BulkV1Error(400, "InvalidBatch", f"Invalid batch id: {batch_id}")
        return batch

    # -- jobs ------------------------------------------------------------------------------
    def _create(self, call: Call) -> Reply:
        spec = call.json()
        if not isinstance(spec, dict):
            raise BulkV1Error(400, "InvalidJob", "Expected a JSON jobInfo object")
        operation = str(spec.get("operation") or "")
        if operation not in DML_OPERATIONS + QUERY_OPERATIONS:
            raise BulkV1Error(400, "InvalidJob", f"Invalid operation: {operation}")
        content = spec.get("contentType") or "CSV"  # Salesforce's default
        if content != "JSON":
            raise BulkV1Error(
                400, "InvalidJob", f"contentType {content} is not emulated: only JSON jobs are"
            )
        obj = self.schema.sobject(str(spec.get("object") or ""))
        if obj is None:
            raise BulkV1Error(400, "InvalidJob", f"Unable to find object: {spec.get('object')}")
        raw_mode = spec.get("concurrencyMode", "Parallel")
        concurrency = CONCURRENCY.get(raw_mode) if isinstance(raw_mode, (str, int)) else None
        if concurrency is None:
            raise BulkV1Error(400, "InvalidJob", f"Invalid concurrencyMode: {raw_mode}")
        external_id = self._external_id(obj, spec) if operation == "upsert" else None
        job = Job(
            id=ids.make_id("750", self.store.next_seq()),
            operation=operation,
            obj=obj,
            external_id=external_id,
            concurrency=concurrency,
            version=call.version,
            created=_now(),
            user_id=self.settings.user_id,
        )
        self._jobs.add(job.id, job)
        return Reply(201, job.info())

    @staticmethod
    def _external_id(obj: SObjectType, spec: dict[str, Any]) -> str:
        """The upsert key of a job definition: an external-id field of the object, or Id."""
        name = str(spec.get("externalIdFieldName") or "")
        if not name:
            raise BulkV1Error(400, "InvalidJob", f"External ID was blank for {obj.name}")
        f = obj.field(name)
        if f is None or not (f.external_id or f.name == "Id"):
            raise BulkV1Error(
                400,
                "InvalidJob",
                f"Field name provided, {name} is not an External ID or indexed field for "
                f"{obj.name}",
            )
        return f.name

    def _set_state(self, job: Job, call: Call) -> Reply:
        spec = call.json()
        state = spec.get("state") if isinstance(spec, dict) else None
        with job.lock:
            if state == "Closed" and job.state == "Open":
                job.state = "Closed"
            elif state == "Aborted" and job.state in ("Open", "Closed"):
                job.state = "Aborted"
                for batch in job.batches.values():
                    if batch.state == "Queued":  # none here: batches run when added
                        batch.state = "NotProcessed"
            else:
                raise BulkV1Error(
                    400, "InvalidJobState", f"Invalid state change from {job.state} to {state}"
                )
            job.modstamp = _now()
            return Reply(200, job.info())

    # -- batches ---------------------------------------------------------------------------
    def _add_batch(self, job: Job, call: Call) -> Reply:
        with job.lock:
            if job.state != "Open":
                raise BulkV1Error(
                    400,
                    "InvalidJobState",
                    f"Job {job.id} is {job.state}: batches can be added to an Open job only",
                )
            batch = Batch(
                id=ids.make_id("751", self.store.next_seq()),
                job_id=job.id,
                created=_now(),
                request=call.body,
            )
            job.batches[batch.id] = batch
            answer = batch.info()  # Queued, as Salesforce answers; processed right below
        self._process(job, batch, call)
        return Reply(201, answer)

    def _process(self, job: Job, batch: Batch, call: Call) -> None:
        started = time.monotonic()
        batch.state = "InProgress"
        try:
            if job.operation in QUERY_OPERATIONS:
                self._run_query(job, batch)
            else:
                self._ingest(job, batch, call)
            batch.state = "Completed"
        except _BatchFailed as exc:
            batch.state, batch.state_message = "Failed", f"InvalidBatch : {exc}"
        batch.processing_ms = int((time.monotonic() - started) * 1000)
        batch.modstamp = _now()

    def _ingest(self, job: Job, batch: Batch, call: Call) -> None:
        """Every record through the write rules in one unit of work: a rejected record is
        reported and leaves no trace, the others are committed together."""
        records = _records(call)
        with self.repo.lock:
            uow = UnitOfWork(self.repo)
            for record in records:
                batch.results.append(self._save(job, uow, record))
            uow.commit()
        batch.processed = len(records)
        batch.failed = sum(1 for r in batch.results if not r["success"])

    @staticmethod
    def _save(job: Job, uow: UnitOfWork, record: dict[str, Any]) -> dict[str, Any]:
        values = {k: v for k, v in record.items() if k != "attributes"}
        try:
            record_id, created = apply_record(
                uow, job.obj, job.operation, job.external_id, values, csv=False
            )
        except RecordRejected as exc:
            errors = [e.as_collection() for e in exc.errors]
            return {"success": False, "created": False, "id": None, "errors": errors}
        return {"success": True, "created": created, "id": record_id, "errors": []}

    # -- queries ---------------------------------------------------------------------------
    def _run_query(self, job: Job, batch: Batch) -> None:
        parsed = self._parse(job, batch.request)
        rows = query.execute(self.store, parsed, include_deleted=job.operation == "queryAll")
        files = max(1, -(-rows.total // RESULT_ROWS))
        batch.rows, batch.processed = rows, rows.total
        batch.result_ids = [ids.make_id("752", self.store.next_seq()) for _ in range(files)]

    def _parse(self, job: Job, body: bytes) -> soql.Query:
        """The batch's SOQL, checked against what Bulk API 1.0 can run."""
        prefix = "Failed to process query: "
        try:
            text = body.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise _BatchFailed(prefix + "the query is not UTF-8 text") from None
        try:
            parsed = soql.parse(text, self.schema)
        except ApiError as exc:
            raise _BatchFailed(f"{prefix}{exc.code}: {exc.message}") from None
        if parsed.children:
            raise _BatchFailed(
                prefix + "FUNCTIONALITY_NOT_ENABLED: Aggregate Relationships not supported in "
                "Bulk Query"
            )
        if parsed.count or parsed.grouping is not None:
            raise _BatchFailed(
                prefix + "FUNCTIONALITY_NOT_ENABLED: Aggregate queries are not supported in "
                "Bulk Query"
            )
        if parsed.offset:
            raise _BatchFailed(
                prefix + "FUNCTIONALITY_NOT_ENABLED: OFFSET is not supported in Bulk Query"
            )
        if parsed.obj.name != job.obj.name:
            raise _BatchFailed(
                f"{prefix}the query's object {parsed.obj.name} is not the job's object "
                f"{job.obj.name}"
            )
        return parsed

    def _results(self, job: Job, batch: Batch, result_id: str | None) -> Reply:
        if batch.state != "Completed":
            raise BulkV1Error(400, "InvalidBatch", f"Batch {batch.id} is {batch.state}: no results")
        if job.operation not in QUERY_OPERATIONS:
            if result_id is not None:
                raise _invalid_url()
            return Reply(200, batch.results)
        if result_id is None:
            return Reply(200, batch.result_ids)
        wanted = ids.normalize(result_id) or result_id
        if wanted not in batch.result_ids or batch.rows is None:
            raise BulkV1Error(400, "InvalidBatch", f"Invalid result id: {result_id}")
        start = batch.result_ids.index(wanted) * RESULT_ROWS
        end = min(batch.rows.total, start + RESULT_ROWS)
        return Reply(200, json_records(batch.rows, start, end, job.version))


def _records(call: Call) -> list[dict[str, Any]]:
    """A DML batch's records: a JSON array of at most ``MAX_BATCH_RECORDS`` objects."""
    try:
        records = call.json()
    except ApiError as exc:
        raise _BatchFailed(f"Failed to parse the JSON batch: {exc.message}") from None
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise _BatchFailed("A JSON batch is an array of record objects")
    if len(records) > MAX_BATCH_RECORDS:
        raise _BatchFailed(
            f"Records in a batch can't exceed {MAX_BATCH_RECORDS}: this one has {len(records)}"
        )
    return records


def json_records(rs: query.ResultSet, start: int, end: int, version: str) -> list[dict[str, Any]]:
    """Rows ``start:end`` as Bulk API 1.0 JSON records: the REST API's shape (``attributes``,
    parents nested) but dates and datetimes as milliseconds since the epoch, as Bulk API
    1.0 renders them in JSON."""
    records = query.rest_records(rs, start, end, version)
    temporal = [ref for ref in rs.query.fields if ref.field.type in ("date", "datetime")]
    for record in records if temporal else ():
        for ref in temporal:
            holder: Any = record
            if ref.via is not None:
                holder = record.get(ref.via.relationship_name or ref.via.name)
            if isinstance(holder, dict) and ref.field.name in holder:
                holder[ref.field.name] = _epoch_ms(holder[ref.field.name], ref.field.type)
    return records


def _epoch_ms(value: Any, kind: str) -> Any:
    if not isinstance(value, str):
        return value
    if kind == "datetime":
        moment = parse_datetime(value)
    else:
        day = parse_date(value)
        moment = dt.datetime.combine(day, dt.time(), dt.UTC) if day else None
    return round(moment.timestamp() * 1000) if moment else value
