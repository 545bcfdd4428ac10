"""Allocations and stock in the DocumentStore, with the in-memory index the list API pages
through.

Documents live in the emulator's :class:`~sandbox.store.DocumentStore` (so they survive a
restart): ``allocations`` keyed by the WMS id, ``stock`` keyed by ``sku|location``. The
index - every allocation's ``(updated_at, id)`` in order plus the few fields the filters
need - is rebuilt from the store at start-up and whenever :func:`sandbox.wms.seed_records`
wrote behind the app's back (it bumps a generation stamp in the store's meta table).

Writes are grouped in a :class:`UnitOfWork` committed in one store transaction with one
timestamp, strictly after every earlier commit: a batch is seen whole or not at all, and a
reader that paged past ``(t, id)`` never has a later commit land behind it.
"""

from __future__ import annotations

import bisect
import threading
import uuid
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sandbox.faults import FaultState
from sandbox.store import DocumentStore
from sandbox.wms.errors import FieldIssue, WmsError
from sandbox.wms.model import (
    OPEN_STATUSES,
    PLAN_FIELDS,
    check_plan_change,
    check_transition,
    next_ts,
    validate_changes,
)

ALLOCATIONS = "allocations"
STOCK = "stock"
GENERATION_META = "wms.generation"
NEXT_ID_META = "wms.next_id"
LAST_TS_META = "wms.last_ts"

Key = tuple[str, str]  # (updated_at, id): the list order


@dataclass(frozen=True)
class Entry:
    """What the list filters and the stock view need of one allocation, kept in memory."""

    updated_at: str
    external_ref: str
    status: str
    sku: str
    location: str
    quantity: int

    @classmethod
    def of(cls, doc: dict[str, Any]) -> Entry:
        return cls(
            doc["updated_at"],
            doc["external_ref"],
            doc["status"],
            doc["sku"],
            doc["location"],
            int(doc["quantity"]),
        )


@dataclass(frozen=True)
class Page:
    docs: list[dict[str, Any]]
    last: Key | None
    has_more: bool


@dataclass(frozen=True)
class Filters:
    since: str | None = None
    statuses: frozenset[str] = frozenset()
    refs: tuple[str, ...] = ()
    skus: frozenset[str] = frozenset()
    locations: frozenset[str] = frozenset()

    def match(self, key: Key, entry: Entry) -> bool:
        return (
            (self.since is None or key[0] >= self.since)
            and (not self.statuses or entry.status in self.statuses)
            and (not self.skus or entry.sku in self.skus)
            and (not self.locations or entry.location in self.locations)
        )


class Repository:
    def __init__(self, store: DocumentStore, faults: FaultState) -> None:
        self.store = store
        self.faults = faults
        self.lock = threading.RLock()
        self._entries: dict[str, Entry] = {}
        self._refs: dict[str, str] = {}
        self._keys: list[Key] = []
        self._last_ts: str | None = None
        self._generation: str | None = None
        self._rebuild()

    # -- index ---------------------------------------------------------------------------
    def _rebuild(self) -> None:
        with self.lock:
            self._generation = self.store.get_meta(GENERATION_META)
            self._entries.clear()
            self._refs.clear()
            for doc in self.store.iter(ALLOCATIONS):
                self._entries[doc["id"]] = Entry.of(doc)
                self._refs[doc["external_ref"]] = doc["id"]
            self._keys = sorted((e.updated_at, i) for i, e in self._entries.items())
            stamps = [self._keys[-1][0]] if self._keys else []
            stored = self.store.get_meta(LAST_TS_META)
            self._last_ts = max([*stamps, stored] if stored else stamps, default=None)

    def refresh(self) -> None:
        """Re-read the store if the seed wrote to it since the index was built."""
        if self.store.get_meta(GENERATION_META) != self._generation:
            self._rebuild()

    def _index(self, doc: dict[str, Any]) -> None:
        old = self._entries.get(doc["id"])
        if old is not None:
            at = bisect.bisect_left(self._keys, (old.updated_at, doc["id"]))
            if at < len(self._keys) and self._keys[at] == (old.updated_at, doc["id"]):
                del self._keys[at]
            if self._refs.get(old.external_ref) == doc["id"]:
                del self._refs[old.external_ref]
        entry = Entry.of(doc)
        self._entries[doc["id"]] = entry
        self._refs[entry.external_ref] = doc["id"]
        bisect.insort(self._keys, (entry.updated_at, doc["id"]))

    # -- reads ---------------------------------------------------------------------------
    def get(self, allocation_id: str) -> dict[str, Any] | None:
        return self.store.get(ALLOCATIONS, allocation_id)

    def id_for_ref(self, external_ref: str) -> str | None:
        return self._refs.get(external_ref)

    def page(self, filters: Filters, after: Key | None, limit: int) -> Page:
        """Up to ``limit`` allocations matching ``filters`` strictly after ``after``, in
        (updated_at, id) order."""
        with self.lock:
            if filters.refs:
                ids = {self._refs[r] for r in filters.refs if r in self._refs}
                candidates: Iterable[Key] = sorted((self._entries[i].updated_at, i) for i in ids)
                if after is not None:
                    candidates = [k for k in candidates if k > after]
            else:
                start = (
                    bisect.bisect_right(self._keys, after)
                    if after is not None
                    else bisect.bisect_left(self._keys, (filters.since or "", ""))
                )
                candidates = self._keys[start:]
            picked: list[Key] = []
            has_more = False
            for key in candidates:
                if not filters.match(key, self._entries[key[1]]):
                    continue
                if len(picked) == limit:
                    has_more = True
                    break
                picked.append(key)
            docs = [d for d in (self.store.get(ALLOCATIONS, k[1]) for k in picked) if d]
        return Page(docs, picked[-1] if picked else None, has_more)

    def stock(self, skus: frozenset[str], locations: frozenset[str]) -> list[dict[str, Any]]:
        """On hand (seeded, counted, reduced by shipments), allocated (open allocations:
        reserved + picked) and available = on hand - allocated, per sku and location."""
        with self.lock:
            on_hand: dict[tuple[str, str], int] = {}
            for doc in self.store.iter(STOCK):
                on_hand[(doc["sku"], doc["location"])] = int(doc["on_hand"])
            allocated: dict[tuple[str, str], int] = defaultdict(int)
            picked: dict[tuple[str, str], int] = defaultdict(int)
            for entry in self._entries.values():
                if entry.status in OPEN_STATUSES:
                    allocated[(entry.sku, entry.location)] += entry.quantity
                if entry.status == "picked":
                    picked[(entry.sku, entry.location)] += entry.quantity
        rows = []
        for sku, location in sorted(set(on_hand) | set(allocated)):
            if (skus and sku not in skus) or (locations and location not in locations):
                continue
            have, held = on_hand.get((sku, location), 0), allocated.get((sku, location), 0)
            rows.append(
                {
                    "sku": sku,
                    "location": location,
                    "on_hand": have,
                    "allocated": held,
                    "picked": picked.get((sku, location), 0),
                    "available": have - held,
                }
            )
        return rows

    # -- writes --------------------------------------------------------------------------
    def unit_of_work(self) -> UnitOfWork:
        return UnitOfWork(self)

    def new_id(self) -> str:
        """Server-assigned id for an allocation created through the API (the seed brings
        its own ids, derived from the hub id)."""
        number = int(self.store.get_meta(NEXT_ID_META, "0") or 0) + 1
        self.store.set_meta(NEXT_ID_META, str(number))
        return f"WN{number:012d}"

    def set_on_hand(self, sku: str, location: str, on_hand: int) -> dict[str, Any]:
        with self.lock:
            ts = next_ts(self._last_ts)
            doc = {"sku": sku, "location": location, "on_hand": on_hand, "updated_at": ts}
            self.store.put(STOCK, f"{sku}|{location}", doc)
            self._advance(ts)
        return doc

    def _advance(self, ts: str) -> None:
        self._last_ts = ts
        self.store.set_meta(LAST_TS_META, ts)


class UnitOfWork:
    """Changes of one request (one record, or a whole batch) committed together with one
    timestamp. Later records of a batch see the earlier ones' changes."""

    def __init__(self, repo: Repository) -> None:
        self.repo = repo
        self.ts = next_ts(repo._last_ts)
        self._docs: dict[str, dict[str, Any]] = {}
        self._stock: dict[str, dict[str, Any]] = {}

    def _doc(self, allocation_id: str) -> dict[str, Any] | None:
        return self._docs.get(allocation_id) or self.repo.store.get(ALLOCATIONS, allocation_id)

    def upsert(
        self, external_ref: str, payload: Any, if_match: int | None = None
    ) -> tuple[str, dict[str, Any]]:
        """Create or update the allocation the hub knows as ``external_ref``; returns
        (``created`` | ``updated`` | ``unchanged``, the allocation)."""
        if not isinstance(payload, dict):
            raise WmsError(422, "validation_failed", "an allocation must be a JSON object")
        current_id = self.repo.id_for_ref(external_ref)
        current = self._doc(current_id) if current_id else None
        given_id = payload.get("id")
        if given_id is not None and given_id != current_id:
            owner = self.repo._entries.get(str(given_id))
            if owner is not None or current is not None:
                raise WmsError(
                    409,
                    "id_mismatch",
                    f"id {given_id} is not the allocation with external_ref {external_ref}"
                    + (f" (that is {current_id})" if current_id else ""),
                    [FieldIssue("id", "mismatch", "does not match external_ref")],
                )
        if payload.get("external_ref", external_ref) != external_ref:
            raise WmsError(
                422,
                "validation_failed",
                "external_ref in the body differs from the one in the path",
                [FieldIssue("external_ref", "mismatch", "must equal the path's external_ref")],
            )
        changes = validate_changes(payload, creating=current is None)
        self._check_precondition(current, if_match)
        self._check_reject(external_ref)
        if current is None:
            return "created", self._create(external_ref, changes)
        return self._update(current, changes)

    def patch(
        self, allocation_id: str, payload: Any, if_match: int | None = None
    ) -> tuple[str, dict[str, Any]]:
        """Partial update of an existing allocation by its WMS id (warehouse users moving
        the status along, or plan corrections)."""
        current = self._doc(allocation_id)
        if current is None:
            raise WmsError(404, "not_found", f"no allocation {allocation_id}")
        changes = validate_changes(payload, creating=False)
        if "external_ref" in changes and changes["external_ref"] != current["external_ref"]:
            raise WmsError(
                409,
                "external_ref_immutable",
                "external_ref identifies the allocation for the hub and cannot change",
                [FieldIssue("external_ref", "immutable", "cannot change")],
            )
        self._check_precondition(current, if_match)
        self._check_reject(current["external_ref"])
        return self._update(current, changes)

    def _check_precondition(self, current: dict[str, Any] | None, if_match: int | None) -> None:
        if if_match is None:
            return
        if current is None or int(current["version"]) != if_match:
            have = "none" if current is None else str(current["version"])
            raise WmsError(
                412,
                "precondition_failed",
                f"If-Match version {if_match} does not match the current version ({have})",
            )

    def _check_reject(self, external_ref: str) -> None:
        if self.repo.faults.should_reject(external_ref):
            raise WmsError(
                422,
                "record_rejected",
                f"allocation {external_ref} rejected by the warehouse's business rules "
                "(sandbox reject fault)",
                [FieldIssue("external_ref", "rejected", "refused by the warehouse")],
            )

    def _create(self, external_ref: str, changes: dict[str, Any]) -> dict[str, Any]:
        status = changes.get("status", "reserved")
        if status != "reserved":
            raise WmsError(
                409,
                "invalid_status_transition",
                f"a new allocation starts reserved, not {status}",
                [FieldIssue("status", "invalid_transition", f"new -> {status} not allowed")],
            )
        doc = {
            "id": self.repo.new_id(),
            "external_ref": external_ref,
            "order_ref": changes.get("order_ref"),
            "line_ref": changes.get("line_ref"),
            **{f: changes[f] for f in PLAN_FIELDS if f in changes},
            "status": "reserved",
            "created_at": self.ts,
            "updated_at": self.ts,
            "version": 1,
        }
        self._put(doc)
        return doc

    def _update(
        self, current: dict[str, Any], changes: dict[str, Any]
    ) -> tuple[str, dict[str, Any]]:
        check_plan_change(current, changes)
        if "status" in changes:
            check_transition(current["status"], changes["status"])
        if all(current.get(k) == v for k, v in changes.items()):
            return "unchanged", current
        doc = {
            **current,
            **changes,
            "updated_at": self.ts,
            "version": int(current["version"]) + 1,
        }
        if current["status"] == "picked" and doc["status"] == "shipped":
            self._goods_issue(doc)
        self._put(doc)
        return "updated", doc

    def _goods_issue(self, doc: dict[str, Any]) -> None:
        """Shipping takes the goods off the shelf: on hand drops by the quantity."""
        stock_id = f"{doc['sku']}|{doc['location']}"
        stock = self._stock.get(stock_id) or self.repo.store.get(STOCK, stock_id)
        on_hand = int(stock["on_hand"]) if stock else 0
        self._stock[stock_id] = {
            "sku": doc["sku"],
            "location": doc["location"],
            "on_hand": on_hand - int(doc["quantity"]),
            "updated_at": self.ts,
        }

    def _put(self, doc: dict[str, Any]) -> None:
        self._docs[doc["id"]] = doc
        with self.repo.lock:
            self.repo._index(doc)

    def commit(self) -> None:
        if not self._docs and not self._stock:
            return
        repo = self.repo
        with repo.lock:
            try:
                repo.store.put_many(ALLOCATIONS, list(self._docs.items()))
                if self._stock:
                    repo.store.put_many(STOCK, list(self._stock.items()))
            except BaseException:
                repo._rebuild()
                raise
            repo._advance(self.ts)


def new_generation(store: DocumentStore) -> None:
    store.set_meta(GENERATION_META, uuid.uuid4().hex)
