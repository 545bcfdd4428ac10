"""Records in the DocumentStore, and every write rule Salesforce applies to them.

One collection per sObject (the object's API name), documents keyed by the 18-character
Id. External-id fields get an index collection ``<Object>#<Field>`` (value, case-folded
-> Ids) so upserts and ``Rel__r.Ext__c`` references resolve without a scan. Deletes are
soft (``IsDeleted``): ``queryAll`` still returns them, as the recycle bin does. A hard
delete (Bulk API ``hardDelete``; emptying the recycle bin does the same on Salesforce, and
is not emulated) purges the record: no read finds it any more, and only the delete log
(``<Object>~purged``, what sObject Get Deleted reads besides the recycle bin) remembers
its id and when it was deleted.

Writes go through a :class:`UnitOfWork` that validates a record completely before it
touches anything, so a rejected record leaves no trace and ``allOrNone`` can drop the
whole unit. Commits are serialised and stamp every record of the commit with one
``SystemModstamp`` strictly later than the previous commit's, so a reader polling on
``SystemModstamp`` never sees an older stamp appear after a newer one.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from sandbox.faults import FaultState
from sandbox.salesforce import ids
from sandbox.salesforce.errors import NOT_FOUND_MESSAGE, ApiError, RecordError, RecordRejected
from sandbox.salesforce.schema import (
    AUTO_NUMBER_FORMATS,
    COUNTRY_FIELDS,
    STATE_FIELDS,
    STATES,
    Field,
    SObjectType,
)
from sandbox.salesforce.soql import STAMP_FIELDS
from sandbox.salesforce.values import Invalid, check_rules, coerce, format_datetime
from sandbox.store import DocumentStore

log = logging.getLogger(__name__)

#: one record of a commit: (object, stored record before, record after, created)
Change = tuple[SObjectType, dict[str, Any] | None, dict[str, Any], bool]

REJECT_MESSAGE = (
    "Record rejected by validation rule Hub_Sandbox_Check: this record is blocked by "
    "sandbox fault injection"
)


def index_collection(obj: SObjectType, f: Field) -> str:
    return f"{obj.name}#{f.name}"


def purged_collection(obj: SObjectType) -> str:
    """The delete log of ``obj``'s hard-deleted records: ``{Id, deletedDate}`` each."""
    return f"{obj.name}~purged"


def index_key(value: Any) -> str:
    return str(value).casefold()


def ids_by_key(store: DocumentStore, obj: SObjectType, f: Field, value: Any) -> list[str]:
    """Ids of the records ``f`` = ``value`` may select: the 18-character form of an Id, or
    the external-id index's entry (live records only; callers check the current value)."""
    if f.name == "Id":
        full = ids.normalize(str(value))
        return [full] if full else []
    entry = store.get(index_collection(obj, f), index_key(value))
    return list((entry or {}).get("ids", []))


class Repository:
    def __init__(self, store: DocumentStore, faults: FaultState, user_id: str) -> None:
        self.store = store
        self.faults = faults
        self.user_id = user_id
        self.lock = threading.RLock()
        #: called after every commit, under the lock, with (object, stored record before,
        #: record after, created) per record: the Change Data Capture hook
        self.listeners: list[Callable[[list[Change]], None]] = []
        self._last_stamp = dt.datetime.min.replace(tzinfo=dt.UTC)
        # a real org answers "SystemModstamp > X" delta polls from an index; without one
        # every incremental read would scan the object (see soql.Floor / query._candidates)
        for name in STAMP_FIELDS:
            store.index_field(name)

    # -- reads -----------------------------------------------------------------------------
    def get(self, obj: SObjectType, record_id: str) -> dict[str, Any] | None:
        return self.store.get(obj.name, record_id)

    def stamped_since(self, obj: SObjectType, moment: dt.datetime) -> Iterator[dict[str, Any]]:
        """Records of ``obj``, deleted ones too, whose ``SystemModstamp`` is ``moment`` or
        later, in stamp order, from the store's stamp index (stamps are stored strings of
        one layout, so the moment's stored form is the index's lower bound)."""
        low = format_datetime(moment)
        return self.store.iter_from(obj.name, "SystemModstamp", low, batch_size=5000)

    def purged(self, obj: SObjectType) -> Iterator[dict[str, Any]]:
        """The delete log's entries for ``obj`` (records hard-deleted, ``{Id, deletedDate}``)."""
        return self.store.iter(purged_collection(obj), batch_size=5000)

    def purge(self, obj: SObjectType, record_id: str) -> None:
        """Remove a deleted record for good (the second half of a hard delete): it leaves
        its id and the stamp of its delete in the delete log. A record that is not
        deleted (or already gone) is left as it is."""
        with self.lock:
            doc = self.get(obj, record_id)
            if doc is None or not doc.get("IsDeleted"):
                return
            entry = {"Id": record_id, "deletedDate": doc.get("SystemModstamp")}
            self.store.put(purged_collection(obj), record_id, entry)
            self.store.delete(obj.name, record_id)

    def by_external(self, obj: SObjectType, f: Field, value: Any) -> list[dict[str, Any]]:
        """Live records whose external-id field equals ``value`` (case-insensitively)."""
        out = []
        for record_id in ids_by_key(self.store, obj, f, value):
            doc = self.get(obj, record_id)
            if doc is None or doc.get("IsDeleted"):
                continue
            if f.name == "Id" or index_key(doc.get(f.name)) == index_key(value):
                out.append(doc)
        return out

    # -- system-maintained values ----------------------------------------------------------
    def next_stamp(self) -> str:
        with self.lock:
            now = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(
                milliseconds=dt.datetime.now(dt.UTC).microsecond // 1000
            )
            if now <= self._last_stamp:
                now = self._last_stamp + dt.timedelta(milliseconds=1)
            self._last_stamp = now
            return format_datetime(now)

    def new_id(self, obj: SObjectType) -> str:
        return ids.make_id(obj.key_prefix, self.store.next_seq())

    def next_auto_number(self, obj: SObjectType, count: int = 1) -> int:
        with self.lock:
            key = f"autonumber:{obj.name}"
            current = int(self.store.get_meta(key, "0") or 0)
            self.store.set_meta(key, str(current + count))
            return current + 1

    def unit(self) -> UnitOfWork:
        return UnitOfWork(self)


class UnitOfWork:
    """Pending writes; :meth:`commit` stores them in one transaction per collection.
    Hold ``repo.lock`` from the first validation to the commit (uniqueness checks)."""

    def __init__(self, repo: Repository) -> None:
        self.repo = repo
        self.docs: dict[tuple[str, str], tuple[SObjectType, dict[str, Any]]] = {}
        self.created: set[tuple[str, str]] = set()
        #: records hard-deleted in this unit: purged once their delete is committed
        self.hard_deleted: set[tuple[str, str]] = set()
        self.index: dict[tuple[str, str], set[str]] = {}
        #: (object, field, index key) -> ids of pending documents that held that value
        #: when queued (checked again on lookup): a lookup reads its candidates instead
        #: of every pending document, so a Bulk job of n rows is not n x n
        self._pending: dict[tuple[str, str, str], set[str]] = {}

    # -- lookups that see pending writes ---------------------------------------------------
    def get(self, obj: SObjectType, record_id: str) -> dict[str, Any] | None:
        pending = self.docs.get((obj.name, record_id))
        return pending[1] if pending else self.repo.get(obj, record_id)

    def by_external(self, obj: SObjectType, f: Field, value: Any) -> list[dict[str, Any]]:
        key = index_key(value)
        # a stored record with a pending version is judged by that version only
        found = {
            d["Id"]: d
            for d in self.repo.by_external(obj, f, value)
            if (obj.name, d["Id"]) not in self.docs
        }
        for record_id in self._pending.get((obj.name, f.name, key), ()):
            doc = self.docs[(obj.name, record_id)][1]
            held = doc.get(f.name)
            if not doc.get("IsDeleted") and held is not None and index_key(held) == key:
                found[record_id] = doc
        return list(found.values())

    def _queue(self, obj: SObjectType, record_id: str, doc: dict[str, Any]) -> None:
        self.docs[(obj.name, record_id)] = (obj, doc)
        for f in (*obj.external_ids, obj.field("Id")):
            if f is not None and doc.get(f.name) is not None:
                key = (obj.name, f.name, index_key(doc[f.name]))
                self._pending.setdefault(key, set()).add(record_id)

    # -- operations ------------------------------------------------------------------------
    def insert(self, obj: SObjectType, values: dict[str, Any], *, csv: bool = False) -> str:
        if any(k.lower() == "id" and v not in (None, "") for k, v in values.items()):
            raise RecordRejected(
                RecordError("INVALID_FIELD", "cannot specify Id in an insert call", ["Id"])
            )
        doc: dict[str, Any] = {}
        self._apply(obj, doc, values, creating=True, csv=csv)
        record_id = self.repo.new_id(obj)
        doc = {"Id": record_id, "IsDeleted": False, **doc}
        for f in obj.fields:
            if f.auto_number:
                fmt = AUTO_NUMBER_FORMATS.get(obj.name, "{:08d}")
                doc[f.name] = fmt.format(self.repo.next_auto_number(obj))
            elif f.default is not None and doc.get(f.name) is None and f.createable:
                doc[f.name] = f.default
        if obj.field("OwnerId") and not doc.get("OwnerId"):
            doc["OwnerId"] = self.repo.user_id
        doc["CreatedById"] = self.repo.user_id
        self._finish(obj, doc, None)
        self.created.add((obj.name, record_id))
        return record_id

    def update(
        self, obj: SObjectType, record_id: str, values: dict[str, Any], *, csv: bool = False
    ) -> str:
        full = ids.normalize(record_id)
        if full is None or full[:3] != obj.key_prefix:
            raise RecordRejected(
                RecordError(
                    "MALFORMED_ID", f"{obj.label} ID: id value of incorrect type: {record_id}",
                    ["Id"],
                ),
                status=400,
            )  # fmt: skip
        current = self.get(obj, full)
        if current is None:
            raise RecordRejected(RecordError("NOT_FOUND", NOT_FOUND_MESSAGE), status=404)
        if current.get("IsDeleted"):
            raise RecordRejected(RecordError("ENTITY_IS_DELETED", "entity is deleted"), status=404)
        body_id = next((v for k, v in values.items() if k.lower() == "id"), None)
        if body_id not in (None, "") and ids.normalize(str(body_id)) != full:
            raise RecordRejected(
                RecordError("INVALID_ID_FIELD", "Record ID: id value of incorrect type", ["Id"])
            )
        doc = dict(current)
        self._apply(obj, doc, values, creating=False, csv=csv)
        self._finish(obj, doc, current)
        return full

    def upsert(
        self, obj: SObjectType, field_name: str, value: Any, values: dict[str, Any],
        *, csv: bool = False,
    ) -> tuple[str, bool]:  # fmt: skip
        f = obj.field(field_name)
        if f is None or not (f.external_id or f.name == "Id"):
            raise ApiError(
                404,
                "NOT_FOUND",
                f"Provided external ID field does not exist or is not accessible: {field_name}",
            )
        if value in (None, ""):
            raise RecordRejected(
                RecordError(
                    "MISSING_ARGUMENT", f"{f.name} not specified", [f.name],
                )
            )  # fmt: skip
        matches = self.by_external(obj, f, value)
        if len(matches) > 1:
            raise RecordRejected(
                RecordError(
                    "DUPLICATE_EXTERNAL_ID",
                    f"{f.display_label}: more than one record found for external id field: "
                    f"{[m['Id'] for m in matches]}",
                    [f.name],
                ),
                status=300,
            )
        rest = {k: v for k, v in values.items() if k.lower() != f.name.lower()}
        if matches:
            return self.update(obj, matches[0]["Id"], rest, csv=csv), False
        if f.name == "Id":
            raise RecordRejected(RecordError("NOT_FOUND", "Provided Id does not exist"), status=404)
        return self.insert(obj, {**rest, f.name: value}, csv=csv), True

    def delete(self, obj: SObjectType, record_id: str) -> str:
        full = ids.normalize(record_id)
        if full is None or full[:3] != obj.key_prefix:
            raise RecordRejected(
                RecordError("MALFORMED_ID", f"malformed id {record_id}"), status=400
            )
        current = self.get(obj, full)
        if current is None:
            raise RecordRejected(RecordError("NOT_FOUND", NOT_FOUND_MESSAGE), status=404)
        if current.get("IsDeleted"):
            raise RecordRejected(RecordError("ENTITY_IS_DELETED", "entity is deleted"), status=404)
        self._reject_if_faulted(obj, current)
        doc = {**current, "IsDeleted": True}
        self._queue(obj, full, doc)
        return full

    def hard_delete(self, obj: SObjectType, record_id: str) -> str:
        """Bulk API ``hardDelete``: deleted as :meth:`delete` does, then purged at commit
        (it never sits in the recycle bin: ``queryAll`` does not find it, Get Deleted does)."""
        full = self.delete(obj, record_id)
        self.hard_deleted.add((obj.name, full))
        return full

    # -- validation ------------------------------------------------------------------------
    def _apply(
        self, obj: SObjectType, doc: dict[str, Any], values: dict[str, Any], *,
        creating: bool, csv: bool,
    ) -> None:  # fmt: skip
        for key, raw in values.items():
            if key == "attributes" or key.lower() == "id":
                continue
            if csv and raw == "" and not creating:
                continue  # Bulk API: an empty cell leaves the field as it is
            if csv and raw == "#N/A":
                raw = None
            f = obj.field(key)
            if f is None:
                rel = obj.relationship(key)
                if rel is not None and isinstance(raw, dict):
                    doc[rel.name] = self._resolve_reference(rel, raw)
                    continue
                raise RecordRejected(
                    RecordError(
                        "INVALID_FIELD", f"No such column '{key}' on sobject of type {obj.name}",
                        [],
                    )
                )  # fmt: skip
            if not (f.createable if creating else f.updateable):
                raise RecordRejected(
                    RecordError(
                        "INVALID_FIELD_FOR_INSERT_UPDATE",
                        f"Unable to create/update fields: {f.name}. Please check the security "
                        "settings of this field and verify that it is read/write for your "
                        "profile or permission set.",
                        [f.name],
                    )
                )
            try:
                value = coerce(f, raw, csv=csv)
                check_rules(f, value)
            except Invalid as exc:
                raise RecordRejected(exc.error) from None
            if f.type == "reference" and value is not None:
                value = self._check_reference(f, value)
            doc[f.name] = value
        if obj.field("BillingCountryCode") is not None:
            _sync_countries(obj, doc, values)
        if obj.field("BillingStateCode") is not None:
            _sync_states(obj, doc, values)
        missing = [
            f.name
            for f in obj.fields
            if f.required and f.createable and doc.get(f.name) in (None, "")
            and f.default is None
        ]  # fmt: skip
        if missing:
            raise RecordRejected(
                RecordError(
                    "REQUIRED_FIELD_MISSING",
                    f"Required fields are missing: [{', '.join(missing)}]",
                    missing,
                )
            )  # fmt: skip

    def _check_reference(self, f: Field, value: str) -> str:
        from sandbox.salesforce.schema import sobject

        full = ids.normalize(value)
        target = sobject(f.reference_to[0]) if f.reference_to else None
        if full is None:
            raise RecordRejected(
                RecordError(
                    "MALFORMED_ID", f"{f.display_label}: id value of incorrect type: {value}",
                    [f.name],
                )
            )  # fmt: skip
        if target is None or full[:3] != target.key_prefix:
            raise RecordRejected(
                RecordError(
                    "FIELD_INTEGRITY_EXCEPTION",
                    f"{f.display_label}: id value of incorrect type: {value}",
                    [f.name],
                )
            )
        doc = self.get(target, full)
        if doc is None:
            raise RecordRejected(
                RecordError(
                    "INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", [f.name]
                )
            )  # fmt: skip
        if doc.get("IsDeleted"):
            raise RecordRejected(RecordError("ENTITY_IS_DELETED", "entity is deleted", [f.name]))
        return full

    def _resolve_reference(self, rel: Field, raw: dict[str, Any]) -> str | None:
        from sandbox.salesforce.schema import sobject

        target = sobject(rel.reference_to[0]) if rel.reference_to else None
        keys = [k for k in raw if k != "attributes"]
        if target is None or len(keys) != 1:
            raise RecordRejected(
                RecordError(
                    "INVALID_FIELD", f"Invalid foreign key reference on {rel.relationship_name}",
                    [rel.name],
                )
            )  # fmt: skip
        ext = target.field(keys[0])
        value = raw[keys[0]]
        if ext is None or not (ext.external_id or ext.name == "Id"):
            raise RecordRejected(
                RecordError(
                    "INVALID_FIELD",
                    f"Field name provided, {keys[0]} is not an External ID or indexed field "
                    f"for {target.name}",
                    [],
                )
            )
        if value in (None, "", "#N/A"):
            return None
        found = self.by_external(target, ext, value)
        if not found:
            raise RecordRejected(
                RecordError(
                    "INVALID_FIELD",
                    f"Foreign key external ID: {value} not found for field {ext.name} in "
                    f"entity {target.name}",
                    [],
                )
            )
        if len(found) > 1:
            raise RecordRejected(
                RecordError(
                    "INVALID_FIELD",
                    f"More than 1 record found for external id field: {ext.name} = {value}",
                    [],
                )
            )
        return str(found[0]["Id"])

    def _reject_if_faulted(self, obj: SObjectType, doc: dict[str, Any]) -> None:
        key = next(
            (str(doc[f.name]) for f in obj.external_ids if f.unique and doc.get(f.name)),
            str(doc.get("Id") or ""),
        )
        if key and self.repo.faults.should_reject(key):
            raise RecordRejected(RecordError("FIELD_CUSTOM_VALIDATION_EXCEPTION", REJECT_MESSAGE))

    def _finish(self, obj: SObjectType, doc: dict[str, Any], before: dict[str, Any] | None) -> None:
        """Uniqueness, the reject fault, derived fields; then queue the document."""
        for f in obj.external_ids:
            value = doc.get(f.name)
            if not f.unique or value in (None, ""):
                continue
            if before is not None and index_key(before.get(f.name)) == index_key(value):
                continue
            clash = [d for d in self.by_external(obj, f, value) if d["Id"] != doc.get("Id")]
            if clash:
                raise RecordRejected(
                    RecordError(
                        "DUPLICATE_VALUE",
                        f"duplicate value found: {f.name} duplicates value on record with id: "
                        f"{clash[0]['Id']}",
                        [],
                    )
                )
        if obj.name == "Contact":
            doc["Name"] = " ".join(p for p in (doc.get("FirstName"), doc.get("LastName")) if p)
        self._reject_if_faulted(obj, doc)
        if not doc.get("Id"):
            return
        doc["LastModifiedById"] = self.repo.user_id
        self._queue(obj, doc["Id"], doc)

    # -- commit ----------------------------------------------------------------------------
    def commit(self) -> None:
        if not self.docs:
            return
        repo = self.repo
        with repo.lock:
            stamp = repo.next_stamp()
            by_collection: dict[str, list[tuple[str, dict[str, Any]]]] = {}
            index_updates: dict[str, dict[str, dict[str, Any] | None]] = {}
            changes: list[Change] = []
            for (name, record_id), (obj, doc) in self.docs.items():
                before = repo.get(obj, record_id)
                changes.append((obj, before, doc, (name, record_id) in self.created))
                if (name, record_id) in self.created:
                    doc["CreatedDate"] = stamp
                doc["LastModifiedDate"] = doc["SystemModstamp"] = stamp
                by_collection.setdefault(name, []).append((record_id, doc))
                for f in obj.external_ids:
                    old = None if before is None or before.get("IsDeleted") else before.get(f.name)
                    new = None if doc.get("IsDeleted") else doc.get(f.name)
                    if index_key(old) == index_key(new) and old is not None:
                        continue
                    coll = index_collection(obj, f)
                    pending = index_updates.setdefault(coll, {})
                    if old not in (None, ""):
                        entry = pending.get(index_key(old)) or repo.store.get(coll, index_key(old))
                        entry = {"ids": [i for i in (entry or {}).get("ids", []) if i != record_id]}
                        pending[index_key(old)] = entry
                    if new not in (None, ""):
                        entry = pending.get(index_key(new)) or repo.store.get(coll, index_key(new))
                        kept = [i for i in (entry or {}).get("ids", []) if i != record_id]
                        pending[index_key(new)] = {"ids": [*kept, record_id]}
            for name, items in by_collection.items():
                repo.store.put_many(name, items)
            for coll, entries in index_updates.items():
                repo.store.put_many(
                    coll, [(k, v) for k, v in entries.items() if v is not None and v["ids"]]
                )
                for key, entry in entries.items():
                    if entry is not None and not entry["ids"]:
                        repo.store.delete(coll, key)
            for listener in repo.listeners:
                try:
                    listener(changes)
                except Exception:  # a change-event failure must not fail the committed write
                    log.exception("commit listener failed")
            for name, record_id in self.hard_deleted:
                repo.purge(self.docs[(name, record_id)][0], record_id)
        self.docs.clear()
        self.created.clear()
        self.hard_deleted.clear()


def write_index(store: DocumentStore, obj: SObjectType, docs: Iterable[dict[str, Any]]) -> None:
    """Index entries for freshly seeded documents (no previous values to remove)."""
    for f in obj.external_ids:
        coll = index_collection(obj, f)
        entries: dict[str, list[str]] = {}
        for doc in docs:
            value = doc.get(f.name)
            if value in (None, "") or doc.get("IsDeleted"):
                continue
            entries.setdefault(index_key(value), []).append(doc["Id"])
        merged = []
        for key, new_ids in entries.items():
            existing = (store.get(coll, key) or {}).get("ids", [])
            merged.append((key, {"ids": list(dict.fromkeys([*existing, *new_ids]))}))
        store.put_many(coll, merged)


_BAD_COUNTRY = (
    "There's a problem with this country, even though it may appear correct. Please select "
    "a country/territory from the list of valid countries."
)


def _sync_countries(obj: SObjectType, doc: dict[str, Any], values: dict[str, Any]) -> None:
    """State and Country/Territory Picklists: an address's country is the ISO code field
    (``BillingCountryCode``) and the name (``BillingCountry``) kept in step with it. A
    write may give either: the code must be one the org allows, the name must be a
    country's integration value (its name); both given, they must agree. Anything else
    is ``FIELD_INTEGRITY_EXCEPTION``, as Salesforce answers."""
    given = {k.lower() for k in values}
    for code_name, text_name in COUNTRY_FIELDS:
        code_field = obj.field(code_name)
        if code_field is None or code_field.picklist is None:
            continue
        names = code_field.picklist.labels
        by_name = {name.lower(): code for code, name in names.items()}
        code, text = doc.get(code_name), doc.get(text_name)
        if code_name.lower() in given:
            if code in (None, ""):
                doc[code_name] = None
                if text_name.lower() not in given or text in (None, ""):
                    doc[text_name] = None
                    continue
                raise RecordRejected(
                    RecordError("FIELD_INTEGRITY_EXCEPTION", _BAD_COUNTRY, [code_name])
                )
            if code not in names:
                raise RecordRejected(
                    RecordError("FIELD_INTEGRITY_EXCEPTION", _BAD_COUNTRY, [code_name])
                )
            agrees = by_name.get(str(text).strip().lower()) == code
            if text_name.lower() in given and text not in (None, "") and not agrees:
                raise RecordRejected(
                    RecordError("FIELD_INTEGRITY_EXCEPTION", _BAD_COUNTRY, [text_name])
                )
            doc[text_name] = names[code]
        elif text_name.lower() in given:
            if text in (None, ""):
                doc[code_name] = doc[text_name] = None
                continue
            found = by_name.get(str(text).strip().lower())
            if found is None:
                raise RecordRejected(
                    RecordError("FIELD_INTEGRITY_EXCEPTION", _BAD_COUNTRY, [text_name])
                )
            doc[code_name], doc[text_name] = found, names[found]


_BAD_STATE = (
    "There's a problem with this state, even though it may appear correct. Please select a "
    "state from the list of valid states."
)


def _bad_state(field: str) -> RecordRejected:
    return RecordRejected(RecordError("FIELD_INTEGRITY_EXCEPTION", _BAD_STATE, [field]))


def _sync_states(obj: SObjectType, doc: dict[str, Any], values: dict[str, Any]) -> None:
    """State picklists (after the countries are in step): ``BillingStateCode`` holds the
    subdivision's code, valid only for the record's country (``BillingCountryCode``), and
    ``BillingState`` its name. A write may give the code (the name follows), the name (the
    code follows; a code in the text field is not a name) or both (the text must be the
    code's name, or the code itself). A state the country does not have, a state without
    a country, a disagreeing pair, or a country changed to one the kept state is not in:
    ``FIELD_INTEGRITY_EXCEPTION``. Clearing the country clears the state."""
    given = {k.lower() for k in values}
    for code_name, text_name, country_name in STATE_FIELDS:
        if obj.field(code_name) is None:
            continue
        states = STATES.get(str(doc.get(country_name) or ""), {})
        by_name = {name.lower(): code for code, name in states.items()}
        code, text = doc.get(code_name), doc.get(text_name)
        code_given, text_given = code_name.lower() in given, text_name.lower() in given
        if code_given and code not in (None, ""):
            if code not in states:
                raise _bad_state(code_name)
            spelled = str(text).strip() if text_given and text not in (None, "") else None
            if spelled is not None and spelled.lower() not in (states[code].lower(), code.lower()):
                raise _bad_state(text_name)
            doc[text_name] = states[code]
        elif code_given:
            doc[code_name] = None
            if text_given and text not in (None, ""):
                raise _bad_state(text_name)
            doc[text_name] = None
        elif text_given:
            if text in (None, ""):
                doc[code_name] = doc[text_name] = None
                continue
            found = by_name.get(str(text).strip().lower())
            if found is None:
                raise _bad_state(text_name)
            doc[code_name], doc[text_name] = found, states[found]
        elif country_name.lower() in given or country_name.removesuffix("Code").lower() in given:
            # the country changed under a kept state
            if not doc.get(country_name):
                doc[code_name] = doc[text_name] = None
            elif code not in (None, "") and code not in states:
                raise _bad_state(code_name)
