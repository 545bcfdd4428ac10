"""OData operations on one service, independent of the transport so the same code serves
plain HTTP requests and the parts of a ``$batch``."""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from sandbox.faults import FaultState
from sandbox.sap.edm import EntitySet, Prop, Service, etag_for, to_json, typed
from sandbox.sap.errors import (
    BUSINESS,
    ETAG_MISMATCH,
    ETAG_MISSING,
    INVALID_BODY,
    INVALID_QUERY,
    NOT_ALLOWED,
    RESOURCE_NOT_FOUND,
    SapError,
)
from sandbox.sap.filter import (
    FilterError,
    change_floor,
    compile_filter,
    first_key_ranges,
)
from sandbox.sap.repository import (
    CHANGE_STAMP,
    KEY_ID,
    KEY_SEP,
    STAMP,
    Doc,
    Repository,
    UnitOfWork,
    Where,
    changed_since,
    collection,
    in_key_ranges,
)
from sandbox.sap.settings import SapSettings
from sandbox.sap.uri import Resource, key_predicate, parse_path

JSON_TYPE = "application/json; charset=utf-8"
WRITE_METHODS = {"POST", "PUT", "PATCH", "MERGE", "DELETE"}


@dataclass
class Op:
    """One request against a service root (``path`` relative to it, still %-encoded)."""

    method: str
    path: str
    query: str = ""
    headers: dict[str, str] = field(default_factory=dict)  # lower-case names
    body: bytes = b""

    def params(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for piece in self.query.split("&"):
            if not piece:
                continue
            name, _, value = piece.partition("=")
            out[unquote(name.replace("+", " "))] = unquote(value.replace("+", " "))
        return out


@dataclass
class Result:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


def json_result(status: int, payload: Any, headers: dict[str, str] | None = None) -> Result:
    out = {"content-type": JSON_TYPE, "dataserviceversion": "2.0"}
    out.update(headers or {})
    return Result(status, out, json.dumps(payload, separators=(",", ":")).encode())


ExpandTree = dict[str, "ExpandTree"]
#: What ``$select`` keeps of an entity: None for everything; else the selected names, each
#: with what is kept of it (None: all of it, a property or a navigation property selected
#: by name or ``Nav/*``; a Selection: the paths into an expanded navigation property)
Selection = dict[str, "Selection | None"]


#: rendered collection pages kept (see Dispatcher._collection)
PAGE_CACHE_SIZE = 64


class Dispatcher:
    def __init__(
        self,
        repo: Repository,
        faults: FaultState,
        settings: SapSettings,
        *,
        reference: bool = False,
    ) -> None:
        self.repo = repo
        self.faults = faults
        self.settings = settings
        #: read everything from the store, entity by entity, keeping nothing: the plain
        #: path the cached one (pages, scans) must answer exactly like
        #: (tests/sandbox/sap/test_sap_render_equivalence.py)
        self.reference = reference
        #: rendered collection pages by request and by the data they were rendered from
        #: (Repository.token of every entity set read): a page read again before any
        #: write to those sets is sent as rendered, without loading or rendering its
        #: entities again
        self._pages: OrderedDict[tuple[Any, ...], Result] = OrderedDict()
        self._pages_lock = threading.Lock()

    # ------------------------------------------------------------------ entry point
    def handle(self, svc: Service, op: Op, root: str, uow: UnitOfWork | None = None) -> Result:
        """Run ``op``; writes go to ``uow`` (a changeset's) or to a private one committed here."""
        method = op.method.upper()
        if method == "POST" and op.headers.get("x-http-method"):
            method = op.headers["x-http-method"].upper()
        res = parse_path(svc, unquote(op.path))
        if method == "GET":
            return self._get(svc, res, op, root)
        if method not in WRITE_METHODS:
            raise SapError(405, NOT_ALLOWED, f"Method {method} not allowed")
        own = uow is None
        work = uow or UnitOfWork(self.repo)
        with self.repo.lock:
            if method == "POST":
                result = self._create(svc, res, op, root, work)
            elif method == "DELETE":
                result = self._delete(svc, res, op, work)
            else:
                result = self._update(svc, res, op, work, replace=method == "PUT")
            if own:
                work.commit()
        return result

    # ------------------------------------------------------------------ reads
    def _get(self, svc: Service, res: Resource, op: Op, root: str) -> Result:
        params = op.params()
        es = res.entity_set
        if res.keys is not None and res.nav is None:
            doc = self._require(svc, es, res.keys)
            if res.prop:
                prop = es.prop_map[res.prop]
                return json_result(200, {"d": {prop.name: to_json(prop, doc.get(prop.name))}})
            select, expand = self._projection(svc, es, params)
            body = self.entity_json(svc, es, doc, root, select, expand)
            return json_result(200, {"d": body}, {"etag": etag_for(doc[STAMP])})
        if res.nav is not None:
            assert res.keys is not None
            parent = self._require(svc, es, res.keys)
            nav = es.nav(res.nav)
            assert nav is not None
            target = svc.sets[nav.target]
            docs = self.repo.related(svc, es, parent, nav)
            if not nav.many:
                if not docs:
                    return json_result(200, {"d": None})
                select, expand = self._projection(svc, target, params)
                return json_result(
                    200, {"d": self.entity_json(svc, target, docs[0], root, select, expand)}
                )
            ids = self._filter_in_memory(target, docs, params)
            by_id = {d[KEY_ID]: d for d in docs}
            return self._collection(
                svc,
                target,
                ids,
                lambda page: [by_id[i] for i in page],
                op,
                params,
                root,
                res.count,
                (es, target),
            )
        filter_text = params.get("$filter", "")
        order_text = params.get("$orderby", "")
        order = self._order(es, order_text)

        def where() -> Where:
            if not filter_text:
                return None, None
            predicate = self._predicate(es, filter_text)
            ranges = first_key_ranges(filter_text, es)
            if ranges is not None:
                return predicate, in_key_ranges(ranges)
            floor = change_floor(filter_text, es)
            if floor is not None:
                return predicate, changed_since(CHANGE_STAMP, floor)
            return predicate, None

        ids = self.repo.scan_ids(
            svc, es, filter_text, order, order_text, where, cached=not self.reference
        )
        return self._collection(
            svc,
            es,
            ids,
            lambda page: list(self.repo.get_many(svc, es, page)),
            op,
            params,
            root,
            res.count,
            (es,),
        )

    def _collection(
        self,
        svc: Service,
        es: EntitySet,
        ids: list[str],
        load: Any,
        op: Op,
        params: dict[str, str],
        root: str,
        count: bool,
        read: tuple[EntitySet, ...],
    ) -> Result:
        """A page of ``ids`` (or their count): rendered, or as rendered before from the
        same data (``read``: the entity sets the ids came from, besides ``es``)."""
        skip = _non_negative(params, "$skip", 0)
        top = _non_negative(params, "$top", None) if "$top" in params else None
        window = ids[skip:]
        if top is not None:
            window = window[:top]
        if count:
            return Result(
                200,
                {"content-type": "text/plain; charset=utf-8", "dataserviceversion": "2.0"},
                str(len(window)).encode(),
            )
        start = _non_negative(params, "$skiptoken", 0)
        limit = self.settings.page_size if top is None else self.settings.max_page_size
        page = window[start : start + limit]
        select, expand = self._projection(svc, es, params)
        # taken before anything is loaded: a write after it moves it, so what is cached
        # under it is never older than it says
        cache_key = (
            svc.name,
            op.path,
            op.query,
            root,
            self.repo.token(
                svc, {s.name: s for s in (*read, es, *_expanded_sets(svc, es, expand))}.values()
            ),
        )
        with self._pages_lock:
            hit = None if self.reference else self._pages.get(cache_key)
            if hit is not None:
                self._pages.move_to_end(cache_key)
                return Result(hit.status, dict(hit.headers), hit.body)
        results = [self.entity_json(svc, es, d, root, select, expand) for d in load(page)]
        payload: dict[str, Any] = {"results": results}
        inline = params.get("$inlinecount", "none")
        if inline not in ("allpages", "none"):
            raise SapError(400, INVALID_QUERY, f"Invalid value '{inline}' for $inlinecount")
        if inline == "allpages":
            payload["__count"] = str(len(ids))  # before $skip/$top, as OData v2 defines
        if start + limit < len(window):
            kept = [
                p
                for p in op.query.split("&")
                if p and not p.lower().startswith(("$skiptoken=", "%24skiptoken="))
            ]
            kept.append(f"$skiptoken={start + limit}")
            payload["__next"] = f"{root}{op.path.lstrip('/')}?{'&'.join(kept)}"
        result = json_result(200, {"d": payload})
        if self.reference:
            return result
        with self._pages_lock:
            self._pages[cache_key] = result
            while len(self._pages) > PAGE_CACHE_SIZE:
                self._pages.popitem(last=False)
        return result

    def _filter_in_memory(
        self, es: EntitySet, docs: list[Doc], params: dict[str, str]
    ) -> list[str]:
        predicate = self._predicate(es, params.get("$filter", ""))
        order = self._order(es, params.get("$orderby", ""))
        rows = [d for d in docs if predicate is None or _safe(predicate, d)]
        if order:
            from sandbox.sap.repository import _sort_key

            rows.sort(key=lambda d: _sort_key(d, order))
        return [d[KEY_ID] for d in rows]

    def _predicate(self, es: EntitySet, text: str) -> Any:
        if not text:
            return None
        try:
            pred = compile_filter(text, es)
        except FilterError as exc:
            raise SapError(400, INVALID_QUERY, f"Invalid filter expression: {exc}") from exc
        return lambda doc: _safe(pred, doc)

    def _order(self, es: EntitySet, text: str) -> list[tuple[Prop, bool]]:
        order: list[tuple[Prop, bool]] = []
        for part in filter(None, (p.strip() for p in text.split(","))):
            bits = part.split()
            if len(bits) > 2 or (len(bits) == 2 and bits[1].lower() not in ("asc", "desc")):
                raise SapError(400, INVALID_QUERY, f"Invalid $orderby clause '{part}'")
            prop = es.prop_map.get(bits[0])
            if prop is None:
                raise SapError(
                    400, INVALID_QUERY, f"Property '{bits[0]}' not found in type '{es.type_name}'"
                )
            order.append((prop, len(bits) == 2 and bits[1].lower() == "desc"))
        return order

    def _projection(
        self, svc: Service, es: EntitySet, params: dict[str, str]
    ) -> tuple[Selection | None, ExpandTree]:
        expand: ExpandTree = {}
        for path in filter(None, (p.strip() for p in params.get("$expand", "").split(","))):
            current, node = es, expand
            for name in path.split("/"):
                nav = current.nav(name)
                if nav is None:
                    raise SapError(
                        400,
                        INVALID_QUERY,
                        f"Navigation property '{name}' not found in '{current.type_name}'",
                    )
                node = node.setdefault(name, {})
                current = svc.sets[nav.target]
        text = params.get("$select", "").strip()
        if not text:
            return None, expand
        return _selection(svc, es, [p.strip() for p in text.split(",")], expand), expand

    def entity_json(
        self,
        svc: Service,
        es: EntitySet,
        doc: Doc,
        root: str,
        select: Selection | None,
        expand: ExpandTree,
        uow: UnitOfWork | None = None,
    ) -> dict[str, Any]:
        uri = f"{root}{es.name}{key_predicate(es, doc)}"
        meta = {"id": uri, "uri": uri, "type": f"{svc.namespace}.{es.type_name}"}
        if STAMP in doc:
            meta["etag"] = etag_for(doc[STAMP])
        out: dict[str, Any] = {"__metadata": meta}
        every, chosen = select is None or "*" in select, select or {}
        for prop in es.props:
            if every or prop.name in chosen:
                out[prop.name] = to_json(prop, doc.get(prop.name))
        for nav in es.navs:
            if nav.name in expand:
                target = svc.sets[nav.target]
                docs = self.repo.related(svc, es, doc, nav, uow)
                inner = chosen.get(nav.name)
                rendered = [
                    self.entity_json(svc, target, d, root, inner, expand[nav.name], uow)
                    for d in docs
                ]
                if nav.many:
                    out[nav.name] = {"results": rendered}
                else:
                    out[nav.name] = rendered[0] if rendered else None
            elif every or nav.name in chosen:
                out[nav.name] = {"__deferred": {"uri": f"{uri}/{nav.name}"}}
        return out

    def _require(
        self, svc: Service, es: EntitySet, keys: dict[str, Any], uow: UnitOfWork | None = None
    ) -> Doc:
        doc = self.repo.get(svc, es, keys, uow)
        if doc is None:
            raise SapError(
                404, RESOURCE_NOT_FOUND, f"Resource not found for segment '{es.type_name}'"
            )
        return doc

    # ------------------------------------------------------------------ writes
    def _body(self, op: Op) -> dict[str, Any]:
        try:
            body = json.loads(op.body or b"{}")
        except ValueError as exc:
            raise SapError(400, INVALID_BODY, "Malformed request body: invalid JSON") from exc
        if not isinstance(body, dict):
            raise SapError(400, INVALID_BODY, "Malformed request body: expected an object")
        return body

    def _create(self, svc: Service, res: Resource, op: Op, root: str, uow: UnitOfWork) -> Result:
        body = self._body(op)
        es = res.entity_set
        if res.keys is not None:
            if res.nav is None:
                raise SapError(405, NOT_ALLOWED, "POST is not allowed on a single entity")
            parent = self._require(svc, es, res.keys, uow)
            nav = es.nav(res.nav)
            assert nav is not None
            target = svc.sets[nav.target]
            body = {**body, **{tp: parent.get(sp) for sp, tp in nav.on}}
            es = target
        doc, created_navs = self.create_tree(svc, es, body, uow)
        doc = uow.get(collection(svc, es), doc[KEY_ID]) or doc  # children re-stamp the header
        payload = self.entity_json(svc, es, doc, root, None, created_navs, uow)
        location = payload["__metadata"]["uri"]
        return json_result(
            201, {"d": payload}, {"location": location, "etag": etag_for(doc[STAMP])}
        )

    def create_tree(
        self,
        svc: Service,
        es: EntitySet,
        body: dict[str, Any],
        uow: UnitOfWork,
        inside: str | None = None,
    ) -> tuple[Doc, ExpandTree]:
        """Create an entity and, deep-insert style, the children given inline (``inside``:
        the entity set whose create this one is inline in). A role (A_Customer) is created
        only inline in its owner, as S/4 creates a customer with its business partner."""
        if not es.creatable and not (es.owner and es.owner == inside):
            raise SapError(405, NOT_ALLOWED, f"Entity set {es.name} cannot be created here")
        doc = self.repo.build(svc, es, body, None, replace=False, uow=uow)
        self.repo.assign_keys(svc, es, doc, uow)
        # a partner created around its customer role is judged by the role's hub id
        if not any(svc.sets[n.target].owner == es.name and body.get(n.name) for n in es.navs):
            self._maybe_reject(es, doc)
        self.repo.insert(svc, es, doc, uow)
        created: ExpandTree = {}
        for nav in es.navs:
            if nav.name not in body or body[nav.name] is None:
                continue
            value = body[nav.name]
            items = value.get("results", [value]) if isinstance(value, dict) else value
            if not isinstance(items, list) or (not nav.many and len(items) > 1):
                raise SapError(400, INVALID_BODY, f"Invalid inline content for '{nav.name}'")
            target = svc.sets[nav.target]
            for item in items:
                if not isinstance(item, dict):
                    raise SapError(400, INVALID_BODY, f"Invalid inline entry for '{nav.name}'")
                if target.owner == es.name and not nav.many:
                    self._number_role_like_owner(svc, es, doc, nav, uow)
                child_body = {**item, **{tp: doc.get(sp) for sp, tp in nav.on}}
                _, grand = self.create_tree(svc, target, child_body, uow, es.name)
                created.setdefault(nav.name, {}).update(grand)
        return doc, created

    def _number_role_like_owner(
        self, svc: Service, es: EntitySet, doc: Doc, nav: Any, uow: UnitOfWork
    ) -> None:
        """A business partner created with its customer role inline (``to_Customer``):
        the customer is numbered like the partner (harmonised number ranges) unless the
        body names it, and the partner's ``Customer`` points at it before it is created,
        so the role finds its partner instead of getting one of its own."""
        for source, _ in nav.on:
            if doc.get(source) in (None, ""):
                doc[source] = doc[es.keys[0]]
        uow.put(collection(svc, es), doc[KEY_ID], doc)

    def _maybe_reject(self, es: EntitySet, doc: Doc) -> None:
        """The ``reject`` fault: by hub id, or by key for entities without one."""
        hub_id = doc.get(self.settings.hub_id_field) or ""
        record_key = hub_id or KEY_SEP.join(str(doc.get(k, "")) for k in es.keys)
        if self.faults.should_reject(record_key):
            shown = hub_id or record_key.replace(KEY_SEP, "/")
            raise SapError(
                400,
                BUSINESS,
                f"{es.label or es.name} {shown} could not be saved: "
                "the object is locked by a background process",
                [],
            )

    def _update(
        self, svc: Service, res: Resource, op: Op, uow: UnitOfWork, *, replace: bool
    ) -> Result:
        es = res.entity_set
        if res.keys is None or res.nav is not None or res.prop is not None:
            raise SapError(405, NOT_ALLOWED, "Updates are only allowed on a single entity")
        if not es.updatable:
            raise SapError(405, NOT_ALLOWED, f"Entity set {es.name} is read-only")
        current = self._require(svc, es, res.keys, uow)
        self._check_etag(op, current)
        doc = self.repo.build(svc, es, self._body(op), current, replace=replace, uow=uow)
        self._maybe_reject(es, doc)
        doc = self.repo.update(svc, es, doc, uow)
        return Result(204, {"etag": etag_for(doc[STAMP]), "dataserviceversion": "2.0"})

    def _delete(self, svc: Service, res: Resource, op: Op, uow: UnitOfWork) -> Result:
        es = res.entity_set
        if res.keys is None or res.nav is not None:
            raise SapError(405, NOT_ALLOWED, "DELETE is only allowed on a single entity")
        if not es.deletable:
            raise SapError(405, NOT_ALLOWED, f"Entity set {es.name} is read-only")
        current = self._require(svc, es, res.keys, uow)
        self._check_etag(op, current)
        self.repo.remove(svc, es, current, uow)
        return Result(204, {"dataserviceversion": "2.0"})

    def _check_etag(self, op: Op, doc: Doc) -> None:
        given = op.headers.get("if-match")
        if given is None:
            if self.settings.require_if_match:
                raise SapError(
                    428, ETAG_MISSING, "Precondition required: send the entity's ETag in If-Match"
                )
            return
        if given.strip() == "*":
            return
        current = _weakless(etag_for(doc[STAMP]))
        if current not in {_weakless(t) for t in given.split(",")}:
            raise SapError(
                412,
                ETAG_MISMATCH,
                "The data has been changed in the meantime; read it again (ETag does not match)",
            )


def _weakless(tag: str) -> str:
    tag = tag.strip()
    return tag[2:] if tag.startswith("W/") else tag


def _non_negative(params: dict[str, str], name: str, default: int | None) -> int:
    raw = params.get(name)
    if raw is None:
        return default or 0
    if not raw.isdigit():
        raise SapError(400, INVALID_QUERY, f"Invalid value '{raw}' for system query option {name}")
    return int(raw)


def _safe(predicate: Any, doc: Doc) -> bool:
    try:
        return bool(predicate(doc))
    except FilterError as exc:
        raise SapError(400, INVALID_QUERY, f"Invalid filter expression: {exc}") from exc


def _expanded_sets(svc: Service, es: EntitySet, expand: ExpandTree) -> list[EntitySet]:
    """The entity sets an ``$expand`` tree reads, from ``es``."""
    out: list[EntitySet] = []
    for name, inner in expand.items():
        nav = es.nav(name)
        assert nav is not None
        target = svc.sets[nav.target]
        out += [target, *_expanded_sets(svc, target, inner)]
    return out


def _selection(svc: Service, es: EntitySet, paths: list[str], expand: ExpandTree) -> Selection:
    """``$select``'s paths as what each entity keeps, as SAP Gateway reads them (OData V2):
    ``*`` or a name keeps all of a property or navigation property (a navigation property
    not expanded stays a deferred link); ``Nav/Prop`` keeps only ``Prop`` of the entities
    expanded under ``Nav`` (``Nav/*`` all of them), and ``Nav`` must be in ``$expand``.
    Beyond the paths, only ``__metadata`` is returned."""
    out: Selection = {}
    inner: dict[str, list[str]] = {}
    for path in paths:
        head, _, rest = path.partition("/")
        nav = es.nav(head)
        if head != "*" and head not in es.prop_map and nav is None:
            raise SapError(
                400, INVALID_QUERY, f"Property '{head}' not found in type '{es.type_name}'"
            )
        if not rest:
            out[head] = None
        elif nav is None:
            raise SapError(
                400, INVALID_QUERY, f"'{path}' in $select: only a navigation property has a path"
            )
        elif head not in expand:
            raise SapError(
                400,
                INVALID_QUERY,
                f"'{path}' in $select: navigation property '{head}' is not in $expand",
            )
        else:
            inner.setdefault(head, []).append(rest)
    for head, rests in inner.items():
        if head not in out:  # a name on its own keeps all of it
            nav = es.nav(head)
            assert nav is not None
            out[head] = _selection(svc, svc.sets[nav.target], rests, expand[head])
    return out


__all__ = ["Dispatcher", "Op", "Result", "json_result", "typed"]
