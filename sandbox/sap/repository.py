"""Entity persistence on the shared DocumentStore: keys, change stamps, number ranges,
validation and filtered/ordered scans.

One store collection per entity set (``<SERVICE>.<EntitySet>``); a document's id is its key
values joined by ``KEY_SEP`` so id order is key order and a header's items are an id-prefix
range. Writes go through a :class:`UnitOfWork` so a ``$batch`` changeset is all or nothing.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from decimal import Decimal
from typing import Any

from sandbox.sap.edm import (
    EdmValueError,
    EntitySet,
    Nav,
    Prop,
    Service,
    initial_value,
    ms_to_datetime,
    now_ms,
    order_value,
    to_storage,
)
from sandbox.sap.errors import BUSINESS, DUPLICATE, INVALID_BODY, Detail, SapError
from sandbox.sap.events import Change, classify_commit
from sandbox.store import DocumentStore

KEY_SEP = "\x1f"
STAMP = "__ts"
#: the change time S/4 answers delta queries on (indexed in the store)
CHANGE_STAMP = "LastChangeDateTime"
GENERATION_META = "sap.generation"

Doc = dict[str, Any]
#: Where a query's matches can be, read from an index (a superset: the predicate decides).
Candidates = Callable[[DocumentStore, str], Iterable[Doc]]
#: A compiled $filter: the predicate, and its candidates (None: the whole entity set).
Where = tuple[Callable[[Doc], bool] | None, Candidates | None]


def in_key_ranges(ranges: list[tuple[str, str]]) -> Candidates:
    """Documents in these id ranges (see :func:`sandbox.sap.filter.first_key_ranges`)."""
    return lambda store, coll: (
        doc for low, high in ranges for doc in store.iter_range(coll, low, high)
    )


def changed_since(field: str, low: int) -> Candidates:
    """Documents whose change stamp ``field`` is at least ``low``, from its index."""
    return lambda store, coll: store.iter_from(coll, field, low)


def collection(svc: Service, es: EntitySet) -> str:
    return f"{svc.name}.{es.name}"


def doc_id(es: EntitySet, values: dict[str, Any]) -> str:
    return KEY_SEP.join(str(values[k]) for k in es.keys)


class StampClock:
    """Strictly increasing millisecond change stamps, so ETags always change on write."""

    def __init__(self) -> None:
        self._last = 0
        self._lock = threading.Lock()

    def next(self) -> int:
        with self._lock:
            self._last = max(now_ms(), self._last + 1)
            return self._last


def apply_stamp(es: EntitySet, doc: Doc, stamp: int, *, created: bool) -> None:
    """Maintain the system fields S/4 keeps on a business object."""
    doc[STAMP] = stamp
    day = stamp - stamp % 86_400_000
    when = ms_to_datetime(stamp)
    if "LastChangeDateTime" in es.prop_map:
        doc["LastChangeDateTime"] = stamp
    if "LastChangeDate" in es.prop_map:
        doc["LastChangeDate"] = day
    if "LastChangeTime" in es.prop_map:
        doc["LastChangeTime"] = f"PT{when.hour:02d}H{when.minute:02d}M{when.second:02d}S"
    if created and "CreationDate" in es.prop_map and not doc.get("CreationDate"):
        doc["CreationDate"] = day


class UnitOfWork:
    """Pending writes, visible to reads made through it, applied by :meth:`commit`."""

    def __init__(self, repo: Repository) -> None:
        self.repo = repo
        self.pending: dict[tuple[str, str], Doc | None] = {}

    def get(self, coll: str, key: str) -> Doc | None:
        if (coll, key) in self.pending:
            return self.pending[(coll, key)]
        return self.repo.store.get(coll, key)

    def put(self, coll: str, key: str, doc: Doc) -> None:
        self.pending[(coll, key)] = doc

    def delete(self, coll: str, key: str) -> None:
        self.pending[(coll, key)] = None

    def children(self, coll: str, prefix: str) -> list[Doc]:
        found: dict[str, Doc] = {}
        for doc in self.repo.store.iter_prefix(coll, prefix):
            found[doc[KEY_ID]] = doc
        for (c, key), pending in self.pending.items():
            if c == coll and key.startswith(prefix):
                if pending is None:
                    found.pop(key, None)
                else:
                    found[key] = pending
        return [found[k] for k in sorted(found)]

    def commit(self) -> None:
        """Apply the pending writes, then tell the repository's commit listeners (the
        business events) what changed."""
        changes = classify_commit(self.pending, self.repo.store.get) if self.repo.listeners else []
        by_coll: dict[str, list[tuple[str, Doc]]] = {}
        deletes: list[tuple[str, str]] = []
        for (coll, key), doc in self.pending.items():
            if doc is None:
                deletes.append((coll, key))
            else:
                by_coll.setdefault(coll, []).append((key, doc))
        for coll, items in by_coll.items():
            self.repo.store.put_many(coll, items)
        for coll, key in deletes:
            self.repo.store.delete(coll, key)
        self.pending.clear()
        for listener in self.repo.listeners if changes else ():
            try:
                listener(changes)
            except Exception:  # a listener must never undo a committed write
                logging.getLogger(__name__).exception("commit listener failed")


#: every stored document remembers its own id (so prefix scans can be overlaid)
KEY_ID = "__id"


class Repository:
    """Reads and validated writes of entities for all services of one emulator."""

    def __init__(
        self, store: DocumentStore, code_lists: dict[str, list[str]], check_references: bool
    ) -> None:
        self.store = store
        store.index_field(CHANGE_STAMP)  # delta reads ("changed since") use it
        self.code_lists = {name: set(values) for name, values in code_lists.items()}
        self.check_references = check_references
        self.clock = StampClock()
        self.lock = threading.RLock()
        #: called with the business object changes of each commit (sandbox.sap.events)
        self.listeners: list[Callable[[list[Change]], None]] = []
        self._cache: OrderedDict[tuple[Any, ...], list[str]] = OrderedDict()

    # ------------------------------------------------------------------ versions & cache
    def _version(self, coll: str) -> tuple[int, int]:
        """Every write through the store moves the first (the store's write count: the
        API's commits and the seed alike); the count catches documents removed from the
        file by another process (archiving in the seed)."""
        return (self.store.writes(coll), self.store.count(coll))

    def token(self, svc: Service, sets: Iterable[EntitySet]) -> tuple[Any, ...]:
        """What a rendered read of ``sets`` is valid for: a reseed (the generation) or
        any write to one of their collections (:meth:`_version`) moves it."""
        return (
            self.store.get_meta(GENERATION_META),
            *(self._version(collection(svc, es)) for es in sets),
        )

    def scan_ids(
        self,
        svc: Service,
        es: EntitySet,
        filter_text: str,
        order: list[tuple[Prop, bool]],
        order_text: str,
        where: Callable[[], Where] = lambda: (None, None),
        *,
        cached: bool = True,
    ) -> list[str]:
        """Ids of matching entities in result order; cached per (query, data version) so
        following server pages neither rescans the collection nor parses the filter again.
        ``where`` compiles the filter, on a miss only: the predicate and the candidates
        (an index read) that narrow the scan. ``cached=False``: scanned every time, the
        cache neither read nor written."""
        coll = collection(svc, es)
        cache_key = (coll, filter_text, order_text, self.token(svc, [es]))
        hit = self._cache.get(cache_key) if cached else None
        if hit is not None:
            self._cache.move_to_end(cache_key)
            return hit
        predicate, candidates = where()
        rows: list[tuple[Any, str]] = []
        docs = candidates(self.store, coll) if candidates is not None else self.store.iter(coll)
        for doc in docs:
            if predicate is None or predicate(doc):
                rows.append((_sort_key(doc, order), doc[KEY_ID]))
        if order:
            rows.sort(key=lambda row: row[0])
        ids = [row[1] for row in rows]
        if not cached:
            return ids
        self._cache[cache_key] = ids
        while len(self._cache) > 32:
            self._cache.popitem(last=False)
        return ids

    def get_many(self, svc: Service, es: EntitySet, ids: Iterable[str]) -> Iterator[Doc]:
        coll = collection(svc, es)
        for key in ids:
            doc = self.store.get(coll, key)
            if doc is not None:
                yield doc

    def get(
        self, svc: Service, es: EntitySet, keys: dict[str, Any], uow: UnitOfWork | None = None
    ) -> Doc | None:
        coll = collection(svc, es)
        key = doc_id(es, keys)
        return uow.get(coll, key) if uow else self.store.get(coll, key)

    def related(
        self, svc: Service, es: EntitySet, doc: Doc, nav: Nav, uow: UnitOfWork | None = None
    ) -> list[Doc]:
        """Targets of a navigation from ``doc``."""
        target = svc.sets[nav.target]
        values = {tp: doc.get(sp) for sp, tp in nav.on}
        if any(v in (None, "") for v in values.values()):
            return []
        coll = collection(svc, target)
        key_prefix = list(target.keys[: len(values)])
        if set(key_prefix) == set(values):
            prefix = KEY_SEP.join(str(values[k]) for k in key_prefix)
            if len(key_prefix) == len(target.keys):
                found = uow.get(coll, prefix) if uow else self.store.get(coll, prefix)
                return [found] if found else []
            if uow:
                return uow.children(coll, prefix + KEY_SEP)
            return list(self.store.iter_prefix(coll, prefix + KEY_SEP))
        return [d for d in self.store.iter(coll) if all(d.get(k) == v for k, v in values.items())]

    # ------------------------------------------------------------------ validation
    def build(
        self,
        svc: Service,
        es: EntitySet,
        body: dict[str, Any],
        base: Doc | None,
        *,
        replace: bool,
        uow: UnitOfWork,
    ) -> Doc:
        """Validate ``body`` into a storage-form document (new when ``base`` is None)."""
        details: list[Detail] = []
        nav_names = {n.name for n in es.navs}
        for name in body:
            if name == "__metadata" or name in nav_names:
                continue
            if name not in es.prop_map:
                details.append(
                    Detail(
                        INVALID_BODY,
                        f"Property '{name}' is invalid for type '{es.type_name}'",
                        name,
                    )
                )
        doc: Doc = dict(base) if base and not replace else {}
        if base and replace:
            for k in (*es.keys, STAMP, KEY_ID):
                doc[k] = base[k]
            for prop in es.props:
                if prop.readonly:
                    doc[prop.name] = base.get(prop.name)
        for prop in es.props:
            if prop.name in body and not prop.readonly:
                if base is not None and prop.name in es.keys:
                    try:
                        same = to_storage(prop, body[prop.name]) == base.get(prop.name)
                    except EdmValueError:
                        same = False
                    if not same:
                        details.append(
                            Detail(
                                BUSINESS, f"Key property '{prop.name}' cannot be changed", prop.name
                            )
                        )
                    continue
                try:
                    doc[prop.name] = to_storage(prop, body[prop.name])
                except EdmValueError as exc:
                    details.append(Detail(INVALID_BODY, str(exc), prop.name))
                    continue
            elif prop.name not in doc:
                doc[prop.name] = initial_value(prop)
        for prop in es.props:
            value = doc.get(prop.name)
            if prop.codes and value not in (None, ""):
                allowed = self.code_lists.get(prop.codes, set())
                if allowed and value not in allowed:
                    details.append(
                        Detail(
                            BUSINESS,
                            f"Value '{value}' is not allowed for "
                            f"'{prop.label or prop.name}' ({prop.name})",
                            prop.name,
                        )
                    )
            if prop.required and value in (None, "") and prop.name not in es.keys:
                details.append(
                    Detail(
                        BUSINESS,
                        f"Enter a value for field '{prop.label or prop.name}' ({prop.name})",
                        prop.name,
                    )
                )
            if prop.ref and self.check_references and value not in (None, ""):
                ref_svc, ref_set, _ = prop.ref
                from sandbox.sap.services import SERVICES

                rsvc = SERVICES[ref_svc]
                if uow.get(collection(rsvc, rsvc.sets[ref_set]), str(value)) is None:
                    details.append(
                        Detail(BUSINESS, f"{prop.label} {value} does not exist", prop.name)
                    )
        if details:
            raise SapError(400, details[0].code, details[0].message, details)
        return doc

    def assign_keys(self, svc: Service, es: EntitySet, doc: Doc, uow: UnitOfWork) -> None:
        """Fill keys the client left empty from the entity set's number range."""
        num = es.numbering
        if num and doc.get(num.field) in (None, ""):
            if num.per_parent:
                position = es.keys.index(num.field)
                prefix = KEY_SEP.join(str(doc.get(k, "")) for k in es.keys[:position])
                siblings = uow.children(collection(svc, es), prefix + KEY_SEP)
                highest = max(
                    (int(d[num.field]) for d in siblings if str(d[num.field]).isdigit()),
                    default=num.start - num.step,
                )
                value = highest + num.step
            else:
                meta_key = f"sap.nr.{svc.name}.{es.name}"
                value = int(self.store.get_meta(meta_key, str(num.start - 1)) or 0) + 1
                while True:
                    candidate = str(value).zfill(num.width) if num.pad else str(value)
                    if uow.get(collection(svc, es), candidate) is None:
                        break
                    value += 1
                self.store.set_meta(meta_key, str(value))
            doc[num.field] = str(value).zfill(num.width) if num.pad else str(value)
        missing = [k for k in es.keys if doc.get(k) is None]
        # keys of non-numbered sets may legitimately be '' (e.g. stock Batch), not None
        if missing:
            raise SapError(
                400,
                BUSINESS,
                f"Key field '{missing[0]}' must be supplied",
                [Detail(BUSINESS, f"Key field '{missing[0]}' must be supplied", missing[0])],
            )
        for k in es.keys:
            prop = es.prop_map[k]
            if prop.max_length is not None and len(str(doc[k])) > prop.max_length:
                raise SapError(
                    400,
                    INVALID_BODY,
                    f"Value '{doc[k]}' of property '{k}' exceeds maximum length {prop.max_length}",
                )
        if es.numbering is None and all(doc.get(k) == "" for k in es.keys):
            raise SapError(400, BUSINESS, f"Key of {es.label or es.name} must not be initial")

    def insert(self, svc: Service, es: EntitySet, doc: Doc, uow: UnitOfWork) -> Doc:
        coll = collection(svc, es)
        key = doc_id(es, doc)
        if uow.get(coll, key) is not None:
            raise SapError(
                400, DUPLICATE, f"{es.label or es.name} {key.replace(KEY_SEP, '/')} already exists"
            )
        doc[KEY_ID] = key
        self._take_from_parent(svc, es, doc, uow)
        derive_fields(es, doc)
        apply_stamp(es, doc, self.clock.next(), created=True)
        uow.put(coll, key, doc)
        self.touch_parent(svc, es, doc, uow, created=True)
        return doc

    def _take_from_parent(self, svc: Service, es: EntitySet, doc: Doc, uow: UnitOfWork) -> None:
        """Fill the read-only fields SD copies from the header into a new item."""
        if not es.from_parent or not es.parent:
            return
        parent_es = svc.sets[es.parent]
        keys = {pp: doc.get(cp) for cp, pp in es.parent_on}
        parent = uow.get(collection(svc, parent_es), doc_id(parent_es, keys))
        for name in es.from_parent:
            if parent is not None:
                doc[name] = parent.get(name)

    def update(self, svc: Service, es: EntitySet, doc: Doc, uow: UnitOfWork) -> Doc:
        derive_fields(es, doc)
        apply_stamp(es, doc, self.clock.next(), created=False)
        uow.put(collection(svc, es), doc[KEY_ID], doc)
        self.touch_parent(svc, es, doc, uow)
        return doc

    def remove(self, svc: Service, es: EntitySet, doc: Doc, uow: UnitOfWork) -> None:
        for nav in es.navs:
            target = svc.sets[nav.target]
            if nav.many and target.parent == es.name:
                for child in self.related(svc, es, doc, nav, uow):
                    uow.delete(collection(svc, target), child[KEY_ID])
        uow.delete(collection(svc, es), doc[KEY_ID])
        self.touch_parent(svc, es, doc, uow)

    def touch_parent(
        self, svc: Service, es: EntitySet, doc: Doc, uow: UnitOfWork, *, created: bool = False
    ) -> None:
        """A change to an item is a change of its business object: bump the header; a
        change to a role (the customer, its sales areas) bumps the business partner."""
        self._touch_owner(svc, es, doc, uow, created=created)
        if not es.parent:
            return
        parent_es = svc.sets[es.parent]
        keys = {pp: doc.get(cp) for cp, pp in es.parent_on}
        coll = collection(svc, parent_es)
        pkey = doc_id(parent_es, keys)
        parent = uow.get(coll, pkey)
        if parent is None:
            return
        parent = dict(parent)
        apply_stamp(parent_es, parent, self.clock.next(), created=False)
        _recompute_totals(svc, parent_es, parent, uow, self)
        uow.put(coll, pkey, parent)
        self._touch_owner(svc, parent_es, parent, uow)

    def _touch_owner(
        self, svc: Service, es: EntitySet, doc: Doc, uow: UnitOfWork, *, created: bool = False
    ) -> None:
        """Re-stamp the business object ``doc`` is a role of (A_Customer: the business
        partner whose Customer it is; a role just created inline in its partner is found
        by its number, without a scan)."""
        if not es.owner:
            return
        owner_es = svc.sets[es.owner]
        coll = collection(svc, owner_es)
        wanted = {op: doc.get(tp) for tp, op in es.owner_on}
        if any(v in (None, "") for v in wanted.values()):
            return
        # partners are numbered like their customer roles: try that key before a scan
        guess = doc_id(owner_es, {k: next(iter(wanted.values())) for k in owner_es.keys})
        owner = uow.get(coll, guess)
        if owner is None or any(owner.get(k) != v for k, v in wanted.items()):
            owner = None
            if not created:
                matches = (o for o in self.store.iter(coll) if wanted.items() <= o.items())
                owner = next(matches, None)
        if owner is None:
            return
        owner = dict(owner)
        apply_stamp(owner_es, owner, self.clock.next(), created=False)
        uow.put(coll, owner[KEY_ID], owner)


def derive_fields(es: EntitySet, doc: Doc) -> None:
    """Values SD computes itself: an item's net value from quantity and net price; the
    amount FI cleared, fixed when a billing document is cleared in full (a later change
    of the document's amounts does not change what the customer paid)."""
    if es.name == "A_BillingDocument":
        if doc.get("InvoiceClearingStatus") == "C":
            if doc.get("YY1_AmountCleared") in (None, ""):
                doc["YY1_AmountCleared"] = doc.get("TotalGrossAmount")
        else:
            doc["YY1_AmountCleared"] = None
    if es.name == "A_SalesContractItem":
        qty = Decimal(doc.get("RequestedQuantity") or 0)
        price = Decimal(doc.get("NetPriceAmount") or 0)
        per = Decimal(doc.get("NetPriceQuantity") or 0) or Decimal(1)
        doc["NetAmount"] = f"{(qty * price / per).quantize(Decimal('0.001')):f}"


def _recompute_totals(
    svc: Service, es: EntitySet, header: Doc, uow: UnitOfWork, repo: Repository
) -> None:
    """Contract header net value is derived from its items, as in SD."""
    if es.name != "A_SalesContract":
        return
    nav = es.nav("to_Item")
    assert nav is not None
    total = sum(
        (Decimal(i.get("NetAmount") or 0) for i in repo.related(svc, es, header, nav, uow)),
        Decimal(0),
    )
    header["TotalNetAmount"] = f"{total.quantize(Decimal('0.001')):f}"


def _sort_key(doc: Doc, order: list[tuple[Prop, bool]]) -> tuple[Any, ...]:
    out: list[Any] = []
    for prop, desc in order:
        value = order_value(prop, doc.get(prop.name))
        out.append(_Ordered(value, desc))
    out.append(doc[KEY_ID])
    return tuple(out)


class _Ordered:
    """Sort wrapper: None sorts first ascending, ordering flips for descending."""

    __slots__ = ("desc", "value")

    def __init__(self, value: Any, desc: bool) -> None:
        self.value = value
        self.desc = desc

    def __lt__(self, other: _Ordered) -> bool:
        a, b = self.value, other.value
        if a == b:
            return False
        if a is None:
            result = True
        elif b is None:
            result = False
        else:
            result = a < b
        return not result if self.desc else result

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Ordered) and self.value == other.value

    def __hash__(self) -> int:
        return hash(self.value)
