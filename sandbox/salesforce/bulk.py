"""Bulk API 2.0: ingest jobs (CSV upload, per-record results) and query jobs (CSV result
pages with ``Sforce-Locator``).

Ingest jobs are processed synchronously when the client marks the upload complete: the
PATCH answers ``UploadComplete`` and the next GET already sees ``JobComplete`` (or
``Failed`` with ``errorMessage`` when the CSV header is unusable), which simple-salesforce's
``bulk2`` polling accepts unmodified. Every record goes through the same write rules as the
REST API (one unit of work per job, so a record's failure never touches the others).

Query jobs run their SOQL once, on the first look at the job, and keep the projected rows;
result pages are rendered on request, ``maxRecords`` rows at a time, and streamed, so a
100k-row result is never one string. Jobs live in memory (the newest ``MAX_JOBS``); an
emulator restart forgets them, as Salesforce forgets jobs after seven days.
"""

from __future__ import annotations

import base64
import csv
import io
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from sandbox.salesforce import ids, query, soql
from sandbox.salesforce.errors import ApiError, RecordError, RecordRejected
from sandbox.salesforce.repository import Repository, UnitOfWork
from sandbox.salesforce.rest import Call, Reply, method_not_allowed
from sandbox.salesforce.schema import DEFAULT_SCHEMA, Schema, SObjectType
from sandbox.salesforce.settings import SalesforceSettings
from sandbox.salesforce.values import format_datetime
from sandbox.store import DocumentStore

MAX_JOBS = 200
J = TypeVar("J")
DEFAULT_MAX_RECORDS = 50_000
STREAM_CHUNK = 1000
CSV_TYPE = "text/csv"
DELIMITERS = {"COMMA": ",", "TAB": "\t", "PIPE": "|", "SEMICOLON": ";", "CARET": "^",
              "BACKQUOTE": "`"}  # fmt: skip
LINE_ENDINGS = {"LF": "\n", "CRLF": "\r\n"}
INGEST_OPERATIONS = ("insert", "update", "upsert", "delete", "hardDelete")
RESULT_KINDS = {
    "successfulresults": "successful",
    "failedresults": "failed",
    "unprocessedrecords": "unprocessed",
}


def _now() -> str:
    import datetime as dt

    return format_datetime(dt.datetime.now(dt.UTC))


def _invalid_job(message: str) -> ApiError:
    return ApiError(400, "INVALIDJOB", message)


@dataclass
class Job:
    id: str
    kind: str  # ingest | query
    operation: str
    obj: SObjectType
    delimiter: str
    line_ending: str
    version: str
    created: str
    user_id: str
    state: str
    external_id: str | None = None
    soql_text: str = ""
    parsed: soql.Query | None = None
    result: query.ResultSet | None = None
    uploads: list[str] = field(default_factory=list)
    header: list[str] = field(default_factory=list)
    successful: list[list[str]] = field(default_factory=list)
    failed: list[list[str]] = field(default_factory=list)
    unprocessed: list[list[str]] = field(default_factory=list)
    processed: int = 0
    failures: int = 0
    error_message: str | None = None
    modstamp: str = ""
    processing_ms: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def info(self, detail: bool) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "operation": self.operation,
            "object": self.obj.name,
            "createdById": self.user_id,
            "createdDate": self.created,
            "systemModstamp": self.modstamp or self.created,
            "state": self.state,
            "concurrencyMode": "Parallel",
            "contentType": "CSV",
            "apiVersion": float(self.version),
            "lineEnding": "CRLF" if self.line_ending == "\r\n" else "LF",
            "columnDelimiter": next(k for k, v in DELIMITERS.items() if v == self.delimiter),
        }
        if self.kind == "ingest":
            if self.external_id:
                out["externalIdFieldName"] = self.external_id
            out["contentUrl"] = f"services/data/v{self.version}/jobs/ingest/{self.id}/batches"
        if detail:
            out["jobType"] = "V2Ingest" if self.kind == "ingest" else "V2Query"
            out["numberRecordsProcessed"] = self.processed
            out["retries"] = 0
            out["totalProcessingTime"] = self.processing_ms
            if self.kind == "ingest":
                out["numberRecordsFailed"] = self.failures
                out["apiActiveProcessingTime"] = self.processing_ms
                out["apexProcessingTime"] = 0
            else:
                out["isPkChunkingSupported"] = True
            if self.error_message:
                out["errorMessage"] = self.error_message
        return out


class JobRegistry(Generic[J]):
    """The jobs an API remembers, by id (15- or 18-character), the newest ``MAX_JOBS``:
    Salesforce forgets jobs too (after seven days), and an emulator must not grow forever."""

    def __init__(self) -> None:
        self._jobs: OrderedDict[str, J] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, job_id: str, job: J) -> None:
        with self._lock:
            self._jobs[job_id] = job
            while len(self._jobs) > MAX_JOBS:
                self._jobs.popitem(last=False)

    def get(self, job_id: str) -> J | None:
        with self._lock:
            return self._jobs.get(ids.normalize(job_id) or job_id)

    def drop(self, job_id: str) -> None:
        with self._lock:
            self._jobs.pop(job_id, None)

    def all(self) -> list[J]:
        with self._lock:
            return list(self._jobs.values())


class BulkApi:
    def __init__(
        self,
        store: DocumentStore,
        repo: Repository,
        settings: SalesforceSettings,
        schema: Schema = DEFAULT_SCHEMA,
    ) -> None:
        self.store = store
        self.schema = schema
        self.repo = repo
        self.settings = settings
        self._jobs: JobRegistry[Job] = JobRegistry()

    # -- routing ---------------------------------------------------------------------------
    def handle(self, call: Call) -> Reply:
        parts = call.parts  # ["jobs", "ingest"|"query", id?, sub?]
        if len(parts) < 2 or parts[1] not in ("ingest", "query"):
            raise ApiError(404, "NOT_FOUND", "The requested resource does not exist")
        kind = parts[1]
        if len(parts) == 2:
            if call.method == "POST":
                return self._create(kind, call)
            if call.method == "GET":
                return self._list(kind, call)
            raise method_not_allowed(call.method, "GET,POST")
        job = self._job(kind, parts[2])
        if len(parts) == 3:
            if call.method == "GET":
                if kind == "query":
                    self._run_query(job)
                return Reply(200, job.info(detail=True))
            if call.method == "PATCH":
                return self._set_state(job, call)
            if call.method == "DELETE":
                self._jobs.drop(job.id)
                return Reply(204)
            raise method_not_allowed(call.method, "GET,PATCH,DELETE")
        sub = parts[3]
        if kind == "ingest" and sub == "batches" and len(parts) == 4:
            if call.method != "PUT":
                raise method_not_allowed(call.method, "PUT")
            return self._upload(job, call)
        if kind == "ingest" and sub.lower() in RESULT_KINDS and len(parts) == 4:
            if call.method != "GET":
                raise method_not_allowed(call.method, "GET")
            return self._ingest_results(job, RESULT_KINDS[sub.lower()])
        if kind == "query" and sub == "results" and len(parts) == 4:
            if call.method != "GET":
                raise method_not_allowed(call.method, "GET")
            return self._query_results(job, call)
        raise ApiError(404, "NOT_FOUND", "The requested resource does not exist")

    def _job(self, kind: str, job_id: str) -> Job:
        job = self._jobs.get(job_id)
        if job is None or job.kind != kind:
            raise ApiError(404, "NOT_FOUND", "The requested resource does not exist")
        return job

    def _list(self, kind: str, call: Call) -> Reply:
        jobs = [j.info(detail=False) for j in self._jobs.all() if j.kind == kind]
        return Reply(200, {"done": True, "records": jobs, "nextRecordsUrl": None})

    # -- creation --------------------------------------------------------------------------
    def _create(self, kind: str, call: Call) -> Reply:
        spec = call.json()
        if not isinstance(spec, dict):
            raise _invalid_job("Expected a JSON job definition")
        operation = str(spec.get("operation") or "")
        delimiter = DELIMITERS.get(str(spec.get("columnDelimiter") or "COMMA"))
        line_ending = LINE_ENDINGS.get(str(spec.get("lineEnding") or "LF"))
        if delimiter is None:
            raise _invalid_job(f"Invalid column delimiter: {spec.get('columnDelimiter')}")
        if line_ending is None:
            raise _invalid_job(f"Invalid line ending: {spec.get('lineEnding')}")
        if str(spec.get("contentType") or "CSV") != "CSV":
            raise _invalid_job("Only CSV is supported as contentType")
        if kind == "ingest":
            if operation not in INGEST_OPERATIONS:
                raise _invalid_job(f"Invalid operation: {operation}")
            obj = self.schema.sobject(str(spec.get("object") or ""))
            if obj is None:
                raise ApiError(
                    400, "NOT_FOUND", f"sObject type '{spec.get('object')}' is not supported"
                )
            external_id = spec.get("externalIdFieldName")
            if operation == "upsert":
                f = obj.field(str(external_id or ""))
                if f is None or not (f.external_id or f.name == "Id"):
                    raise _invalid_job(
                        f"InvalidJob : Field name provided, {external_id} is not an External "
                        f"ID or indexed field for {obj.name}"
                    )
                external_id = f.name
            job = self._new_job("ingest", operation, obj, delimiter, line_ending, call)
            job.external_id = external_id if operation == "upsert" else None
        else:
            if operation not in ("query", "queryAll"):
                raise _invalid_job(f"Invalid operation: {operation}")
            text = str(spec.get("query") or "")
            parsed = soql.parse(text, self.schema)
            if parsed.children:  # Bulk API 2.0 has no CSV shape for nested records
                raise ApiError(
                    400,
                    "API_ERROR",
                    "Aggregate Relationships not supported in Bulk V2 Query with CSV content type",
                )
            if parsed.count or parsed.offset or parsed.grouping:
                raise ApiError(
                    400,
                    "API_ERROR",
                    "Bulk API 2.0 doesn't support aggregate functions (COUNT(), GROUP BY) "
                    "or OFFSET",
                )
            job = self._new_job("query", operation, parsed.obj, delimiter, line_ending, call)
            job.soql_text, job.parsed = text, parsed
            job.state = "UploadComplete"
        return Reply(200, job.info(detail=False))

    def _new_job(
        self,
        kind: str,
        operation: str,
        obj: SObjectType,
        delimiter: str,
        line_ending: str,
        call: Call,
    ) -> Job:
        job = Job(
            id=ids.make_id("750", self.store.next_seq()),
            kind=kind,
            operation=operation,
            obj=obj,
            delimiter=delimiter,
            line_ending=line_ending,
            version=call.version,
            created=_now(),
            user_id=self.settings.user_id,
            state="Open",
        )
        self._jobs.add(job.id, job)
        return job

    # -- ingest ----------------------------------------------------------------------------
    def _upload(self, job: Job, call: Call) -> Reply:
        with job.lock:
            if job.state != "Open":
                raise ApiError(
                    409,
                    "INVALIDJOBSTATE",
                    f"Job {job.id} is not open for uploads: its state is {job.state}",
                )
            try:
                text = call.body.decode("utf-8-sig")
            except UnicodeDecodeError:
                raise _invalid_job("The CSV data is not UTF-8") from None
            if not text.strip():
                raise _invalid_job("Request body is empty")
            job.uploads.append(text)
        return Reply(201)

    def _set_state(self, job: Job, call: Call) -> Reply:
        spec = call.json()
        state = spec.get("state") if isinstance(spec, dict) else None
        with job.lock:
            if state == "Aborted":
                if job.state in ("JobComplete", "Failed", "Aborted"):
                    raise ApiError(
                        409, "INVALIDJOBSTATE", f"Job is already in a final state: {job.state}"
                    )
                job.state = "Aborted"
                if job.kind == "ingest":
                    job.unprocessed = [
                        row for text in job.uploads for row in self._rows(job, text)[1]
                    ]
                    job.header = job.header or self._header(job)
                job.modstamp = _now()
                return Reply(200, job.info(detail=False))
            if state == "UploadComplete" and job.kind == "ingest":
                if job.state != "Open":
                    raise ApiError(
                        409, "INVALIDJOBSTATE", f"Job is not open: its state is {job.state}"
                    )
                job.state = "UploadComplete"
                answer = job.info(detail=False)
                self._process(job)
                return Reply(200, answer)
        raise _invalid_job(f"Invalid state change to {state!r} for a {job.kind} job")

    def _header(self, job: Job) -> list[str]:
        return self._rows(job, job.uploads[0])[0] if job.uploads else []

    def _rows(self, job: Job, text: str) -> tuple[list[str], list[list[str]]]:
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=job.delimiter)
        rows = [row for row in reader if row]
        return (rows[0], rows[1:]) if rows else ([], [])

    def _process(self, job: Job) -> None:
        started = time.monotonic()
        header: list[str] = []
        rows: list[list[str]] = []
        for text in job.uploads:
            head, body = self._rows(job, text)
            if header and head != header:
                job.state, job.error_message = (
                    "Failed",
                    "InvalidBatch : the uploads' headers differ",
                )
                return
            header = head
            rows.extend(body)
        job.header = header
        problem = self._check_header(job, header)
        if problem:
            job.state, job.error_message = "Failed", problem
            job.unprocessed = rows
            return
        with self.repo.lock:
            uow = UnitOfWork(self.repo)
            for row in rows:
                values = dict(zip(header, row, strict=False))
                try:
                    record_id, created = self._apply(job, uow, values)
                    job.successful.append([record_id, "true" if created else "false", *row])
                except RecordRejected as exc:
                    error = exc.errors[0] if exc.errors else RecordError("UNKNOWN_EXCEPTION", "")
                    given = values.get("Id", "") if job.operation != "insert" else ""
                    job.failed.append([given, error.as_bulk(), *row])
                    job.failures += 1
                job.processed += 1
            uow.commit()
        job.state = "JobComplete"
        job.modstamp = _now()
        job.processing_ms = int((time.monotonic() - started) * 1000)

    def _check_header(self, job: Job, header: list[str]) -> str | None:
        if not header:
            return "InvalidBatch : the CSV has no header row"
        if job.operation in ("delete", "hardDelete") and [h.lower() for h in header] != ["id"]:
            return "InvalidBatch : delete jobs take a single Id column"
        for name in header:
            base, _, sub = name.partition(".")
            if sub:
                rel = job.obj.relationship(base)
                if rel is None:
                    return f"InvalidBatch : Field name not found : {name}"
                continue
            if job.obj.field(name) is None:
                return f"InvalidBatch : Field name not found : {name}"
        if job.operation == "update" and "id" not in [h.lower() for h in header]:
            return "InvalidBatch : Field name not found : Id"
        if (
            job.operation == "upsert"
            and job.external_id
            and job.external_id.lower() not in [h.lower() for h in header]
        ):
            return f"InvalidBatch : Field name not found : {job.external_id}"
        return None

    def _apply(self, job: Job, uow: UnitOfWork, values: dict[str, str]) -> tuple[str, bool]:
        record: dict[str, Any] = {}
        for name, value in values.items():
            base, _, sub = name.partition(".")
            if sub:
                record.setdefault(base, {})[sub] = None if value in ("", "#N/A") else value
            else:
                record[name] = value
        return apply_record(uow, job.obj, job.operation, job.external_id, record, csv=True)

    def _ingest_results(self, job: Job, which: str) -> Reply:
        if which != "unprocessed" and job.state not in ("JobComplete", "Failed", "Aborted"):
            raise ApiError(
                400, "INVALIDJOBSTATE", "Results are only available once the job is complete"
            )
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator=job.line_ending, quoting=csv.QUOTE_ALL)
        header = job.header or self._header(job)
        if which == "successful":
            writer.writerow(["sf__Id", "sf__Created", *header])
            writer.writerows(job.successful)
        elif which == "failed":
            writer.writerow(["sf__Id", "sf__Error", *header])
            writer.writerows(job.failed)
        else:
            writer.writerow(header)
            writer.writerows(job.unprocessed)
        return Reply(200, buffer.getvalue(), media_type=CSV_TYPE)

    # -- query -----------------------------------------------------------------------------
    def _run_query(self, job: Job) -> query.ResultSet:
        with job.lock:
            if job.result is None:
                assert job.parsed is not None
                if job.state == "Aborted":
                    raise ApiError(400, "INVALIDJOBSTATE", "The job was aborted")
                started = time.monotonic()
                job.state = "InProgress"
                job.result = query.execute(
                    self.store, job.parsed, include_deleted=job.operation == "queryAll"
                )
                job.processed = job.result.total
                job.state = "JobComplete"
                job.modstamp = _now()
                job.processing_ms = int((time.monotonic() - started) * 1000)
            return job.result

    def _query_results(self, job: Job, call: Call) -> Reply:
        rs = self._run_query(job)
        raw_max = call.params.get("maxRecords")
        try:
            max_records = int(raw_max) if raw_max else DEFAULT_MAX_RECORDS
        except ValueError:
            raise ApiError(400, "INVALIDPARAMETER", f"maxRecords: {raw_max}") from None
        if max_records < 1:
            raise ApiError(400, "INVALIDPARAMETER", "maxRecords must be positive")
        start = _decode_locator(call.params.get("locator"))
        end = min(rs.total, start + max_records)
        next_locator = _encode_locator(end) if end < rs.total else "null"
        headers = {"Sforce-Locator": next_locator, "Sforce-NumberOfRecords": str(end - start)}
        return Reply(200, _stream(job, rs, start, end), headers=headers, media_type=CSV_TYPE)


def apply_record(
    uow: UnitOfWork,
    obj: SObjectType,
    operation: str,
    external_id: str | None,
    record: dict[str, Any],
    *,
    csv: bool,
) -> tuple[str, bool]:
    """One record of an ingest ``operation`` through the REST API's write rules, queued on
    ``uow``: ``(Id, created)``, or :class:`RecordRejected` with nothing queued. Shared by
    Bulk API 2.0 (CSV cells, ``csv=True``) and Bulk API 1.0 (JSON values), so both APIs
    apply a record exactly as the REST API would."""
    if operation == "insert":
        return uow.insert(obj, record, csv=csv), True
    if operation == "upsert":
        assert external_id is not None
        key = next((k for k in record if k.lower() == external_id.lower()), external_id)
        return uow.upsert(obj, external_id, record.get(key), record, csv=csv)
    id_key = next((k for k in record if k.lower() == "id"), None)
    record_id = str(record.pop(id_key) or "") if id_key is not None else ""
    if operation == "update":
        if not record_id:
            raise RecordRejected(
                RecordError("MISSING_ARGUMENT", "Id not specified in an update call", ["Id"])
            )
        return uow.update(obj, record_id, record, csv=csv), False
    if operation == "hardDelete":  # past the recycle bin: only the delete log keeps it
        return uow.hard_delete(obj, record_id), False
    return uow.delete(obj, record_id), False


def _stream(job: Job, rs: query.ResultSet, start: int, end: int) -> Iterator[str]:
    first = True
    for chunk_start in range(start, max(end, start + 1), STREAM_CHUNK):
        chunk_end = min(end, chunk_start + STREAM_CHUNK)
        page = query.csv_page(
            rs, chunk_start, chunk_end, delimiter=job.delimiter, line_ending=job.line_ending
        )
        if not first:
            page = page.split(job.line_ending, 1)[1]  # header once
        first = False
        yield page


def _encode_locator(offset: int) -> str:
    return base64.b64encode(str(offset).encode()).decode().rstrip("=")


def _decode_locator(locator: str | None) -> int:
    if not locator or locator == "null":
        return 0
    try:
        return int(base64.b64decode(locator + "=" * (-len(locator) % 4)).decode())
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "INVALIDPARAMETER", f"Invalid locator: {locator}") from None
