"""Applies a mapping spec: system records to canonical dicts and back.

The mapper only renames and transforms; validation against the canonical model happens
afterwards (``hub.model.validate_record``) so both kinds of error reach quarantine with the
record, the field and the rule named.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from hub.mapping import views
from hub.mapping.spec import FieldMap, MappingSpec
from hub.mapping.transforms import REGISTRY, Context, TransformError, none_safe_original
from hub.model import ENTITIES

_MISSING = object()


def get_path(record: dict[str, Any], path: str) -> Any:
    """``a.b.c`` lookup; returns the sentinel ``_MISSING`` when any step is absent."""
    current: Any = record
    for part in path.split("."):
        if not isinstance(current, dict) or part not in current:
            return _MISSING
        current = current[part]
    return current


def set_path(record: dict[str, Any], path: str, value: Any) -> None:
    parts = path.split(".")
    current = record
    for part in parts[:-1]:
        current = current.setdefault(part, {})
    current[parts[-1]] = value


def _check_unicode(value: Any) -> None:
    """Text with a lone surrogate cannot be stored, hashed or sent anywhere as UTF-8;
    such a record is malformed at the source, so it is held back here with the position."""
    if isinstance(value, str):
        if value.isascii():
            return
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise TransformError(
                f"invalid Unicode (lone surrogate U+{ord(value[exc.start]):04X} at position "
                f"{exc.start}); correct the text at the source"
            ) from None
    elif isinstance(value, dict):
        for item in value.values():
            _check_unicode(item)
    elif isinstance(value, list):
        for item in value:
            _check_unicode(item)


#: Types of value that hold no text: :func:`_check_unicode` has nothing to look at.
_NO_TEXT = frozenset({int, float, bool, type(None)})


@dataclass(frozen=True)
class FieldProblem:
    field: str
    message: str

    def __str__(self) -> str:
        return f"field '{self.field}': {self.message}"


class MappingValueError(ValueError):
    """Values of one record that no transform could convert; all problems at once."""

    def __init__(self, system: str, entity: str, key: str | None, problems: list[FieldProblem]):
        self.system, self.entity, self.key, self.problems = system, entity, key, problems
        detail = "; ".join(str(p) for p in problems)
        super().__init__(f"{system} {entity} {key or '<no key>'}: {detail}")


class RefResolver(Protocol):
    """Translates references between hub ids and one system's ids (the xref table)."""

    def to_hub(self, entity: str, system: str, external_id: str) -> str | None: ...

    def to_system(self, entity: str, system: str, hub_id: str) -> str | None: ...


@dataclass(frozen=True)
class _Step:
    """One field's conversion in one direction: where to read, the transforms in order,
    where to write."""

    name: str
    fmap: FieldMap
    source: tuple[str, ...]
    target: str
    flat_target: bool
    functions: tuple[Callable[[Any, Context], Any], ...]
    key: str | None  # the source key when the source is one top-level field
    #: the one transform, without its None-safety, when that is the whole conversion
    single: Callable[[Any, Context], Any] | None

    @classmethod
    def of(cls, name: str, fmap: FieldMap, inbound: bool) -> _Step:
        src, dst = (fmap.field, name) if inbound else (name, fmap.field)
        steps = fmap.transform if inbound else list(reversed(fmap.transform))
        functions = tuple(REGISTRY[step][0 if inbound else 1] for step in steps)
        source = tuple(src.split("."))
        key = source[0] if len(source) == 1 else None
        single = none_safe_original(functions[0]) if len(functions) == 1 else None
        return cls(name, fmap, source, dst, "." not in dst, functions, key, single)

    def read(self, record: dict[str, Any]) -> Any:
        """The source value, or ``_MISSING`` when any step of its path is absent."""
        current: Any = record
        for part in self.source:
            if not isinstance(current, dict) or part not in current:
                return _MISSING
            current = current[part]
        return current


#: A field's conversion as :meth:`Mapper._convert` runs it: (source key, step, context,
#: the field map when it is a reference, the one transform when there is one, transforms)
_Compiled = tuple[
    str | None,
    _Step,
    Context,
    FieldMap | None,
    Callable[[Any, Context], Any] | None,
    tuple[Callable[[Any, Context], Any], ...],
]


@dataclass(frozen=True)
class _SpecPlan:
    """What a mapper works out from its spec, once per spec (kept on it): a mapper is made
    per record planned, and these are read for every record converted."""

    fields: dict[str, FieldMap]  # the spec's own dicts, to tell a copy with other fields
    children: dict[str, Any]
    plain: dict[str, FieldMap]  # converted first: they carry the currency
    money: dict[str, FieldMap]
    currency_field: str  # where the money fields' currency is
    writable: tuple[str, ...]
    views: tuple[str, ...]
    #: (id of a field dict, inbound) -> (the dict, its steps); the dict is kept and
    #: compared, so an id is never taken for another dict's
    steps: dict[tuple[int, bool], tuple[dict[str, FieldMap], tuple[_Step, ...]]]

    @classmethod
    def of(cls, spec: MappingSpec) -> _SpecPlan:
        fields, children = spec.fields, spec.children
        money = {k: f for k, f in fields.items() if "money_decimal" in f.transform}
        return cls(
            fields=fields,
            children=children,
            plain={k: f for k, f in fields.items() if k not in money},
            money=money,
            currency_field=next(iter(money.values())).currency_field if money else "currency",
            writable=(*(n for n, f in fields.items() if not f.read_only), *children),
            views=(
                *(n for n, c in children.items() if c.view is not None),
                *(n for n, f in fields.items() if f.view is not None),
            ),
            steps={},
        )

    def describes(self, spec: MappingSpec) -> bool:
        return self.fields is spec.fields and self.children is spec.children


class Mapper:
    def __init__(
        self,
        spec: MappingSpec,
        code_lists: dict[str, dict[str, str]],
        resolver: RefResolver | None = None,
    ) -> None:
        self.spec = spec
        self.code_lists = code_lists
        self.resolver = resolver
        plan = spec._plan
        if not isinstance(plan, _SpecPlan) or not plan.describes(spec):
            # first use, or a copy of a spec with other fields (model_copy shares it)
            plan = spec._plan = _SpecPlan.of(spec)
        self._plan: _SpecPlan = plan
        self._contexts: dict[tuple[int, str | None], Context] = {}
        self._compiled: dict[
            tuple[int, bool, str | None], tuple[dict[str, FieldMap], tuple[_Compiled, ...]]
        ] = {}

    @property
    def writable(self) -> tuple[str, ...]:
        """:attr:`writable_fields`, without a copy (fingerprinting reads it per record)."""
        return self._plan.writable

    @property
    def writable_fields(self) -> list[str]:
        """Canonical fields this system receives on a push (children count as one)."""
        return list(self._plan.writable)

    @property
    def view_names(self) -> list[str]:
        """Canonical lists this system holds as a view (children or fields with a
        ``view``, see hub.mapping.views): derived from their owner's list, so pushed and
        compared but never merged."""
        return list(self._plan.views)

    def held_form(self, canonical: dict[str, Any]) -> dict[str, Any]:
        """``canonical`` as this system holds it: each list it holds as a view replaced
        by that view (today's), the rest as it is. What is pushed, and what a push is
        fingerprinted as. A value already in the view's form (rows with only the mapped
        fields, a field's value instead of a list: read back from the system) is kept."""
        if not self.view_names:
            return canonical
        out, day = dict(canonical), views.today()
        for name, child in self.spec.children.items():
            rows = canonical.get(name) or []
            owners_list = any(set(row) - set(child.fields) for row in rows)
            if child.view is not None and owners_list:
                out[name] = views.apply(child.view, rows, list(child.fields), day)
        for name, fmap in self.spec.fields.items():
            value = canonical.get(name)
            if fmap.view is not None and (value is None or isinstance(value, list)):
                out[name] = views.apply_field(fmap.view, value or [], day)
        return out

    def _resolve(self, fmap: FieldMap, value: Any, inbound: bool) -> Any:
        if fmap.ref is None or value is None:
            return value
        if self.resolver is None:
            raise TransformError(f"reference to {fmap.ref} needs a resolver")
        system = self.spec.system
        resolved = (
            self.resolver.to_hub(fmap.ref, system, str(value))
            if inbound
            else self.resolver.to_system(fmap.ref, system, str(value))
        )
        if resolved is None:
            side = "hub" if inbound else system
            raise TransformError(f"{fmap.ref} {value!r} has no {side} id yet")
        return resolved

    # -- keys -------------------------------------------------------------------------
    def hub_id(self, native: dict[str, Any]) -> str | None:
        field = self.spec.key.hub_id_field
        value = native.get(field) if field else None
        return None if value in (None, "") else str(value)

    def system_id(self, native: dict[str, Any]) -> str | None:
        value = get_path(native, self.spec.key.system_id_field)
        return None if value in (None, "", _MISSING) else str(value)

    # -- conversions ------------------------------------------------------------------
    def _context(self, fmap: FieldMap, currency: str | None) -> Context:
        key = (id(fmap), currency)
        ctx = self._contexts.get(key)
        if ctx is None:
            codes = self.code_lists.get(fmap.codes) if fmap.codes else None
            ctx = Context(currency=currency, codes=codes, datetime_format=fmap.datetime_format)
            self._contexts[key] = ctx
        return ctx

    def _steps(self, fields: dict[str, FieldMap], inbound: bool) -> tuple[_Step, ...]:
        """The conversion of ``fields`` in one direction, worked out once per mapper:
        every record read passes through it, field by field."""
        key = (id(fields), inbound)
        entry = self._plan.steps.get(key)
        if entry is None or entry[0] is not fields:
            steps = tuple(
                _Step.of(name, fmap, inbound)
                for name, fmap in fields.items()
                if inbound or not fmap.read_only
            )
            entry = self._plan.steps[key] = (fields, steps)
        return entry[1]

    def _compile(
        self, fields: dict[str, FieldMap], inbound: bool, currency: str | None
    ) -> tuple[_Compiled, ...]:
        """Each field's step with its context and reference, worked out once per mapper
        and currency: what :meth:`_convert` would otherwise look up per field of every
        record."""
        key = (id(fields), inbound, currency)
        entry = self._compiled.get(key)
        if entry is None or entry[0] is not fields:
            compiled = tuple(
                (
                    step.key,
                    step,
                    self._context(step.fmap, currency),
                    step.fmap if step.fmap.ref is not None else None,
                    step.single,
                    step.functions,
                )
                for step in self._steps(fields, inbound)
            )
            entry = self._compiled[key] = (fields, compiled)
        return entry[1]

    def _convert(
        self,
        fields: dict[str, FieldMap],
        source: dict[str, Any],
        *,
        inbound: bool,
        currency: str | None,
        problems: list[FieldProblem],
        prefix: str = "",
    ) -> dict[str, Any]:
        out: dict[str, Any] = {}
        # every field of every record read passes through this loop: the common cases
        # (a top-level source key, one transform or none, no reference, text that is
        # ASCII) take no call beyond the transform's own
        flat_source = isinstance(source, dict)
        for key, step, ctx, ref, single, functions in self._compile(fields, inbound, currency):
            value: Any
            if key is not None:
                value = source.get(key, _MISSING) if flat_source else _MISSING
            else:
                value = step.read(source)
            if value is _MISSING:
                continue
            try:
                if ref is not None and not inbound:
                    value = self._resolve(ref, value, inbound=False)
                if single is not None:
                    if value is not None:
                        value = single(value, ctx)
                else:
                    for fn in functions:
                        value = fn(value, ctx)
                if inbound:
                    if ref is not None:
                        value = self._resolve(ref, value, inbound=True)
                    kind = type(value)
                    if kind is str:
                        if not value.isascii():
                            _check_unicode(value)
                    elif kind not in _NO_TEXT:
                        _check_unicode(value)
            except TransformError as exc:
                problems.append(FieldProblem(prefix + step.name, str(exc)))
                continue
            if step.flat_target:
                out[step.target] = value
            else:
                set_path(out, step.target, value)
        return out

    def _currency(self, canonical: dict[str, Any]) -> str | None:
        value = get_path(canonical, self._plan.currency_field)
        return value if isinstance(value, str) else None

    def to_canonical(
        self, native: dict[str, Any], context: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Canonical dict of the mapped fields. ``context`` (e.g. the golden record)
        supplies a currency when this system does not carry one."""
        problems: list[FieldProblem] = []
        plain = self._convert(
            self._plan.plain, native, inbound=True, currency=None, problems=problems
        )
        currency = self._currency(plain) or self._currency(context or {})
        out = plain | self._convert(
            self._plan.money, native, inbound=True, currency=currency, problems=problems
        )
        for name, child in self.spec.children.items():
            rows = native.get(child.object)
            if rows is None:
                continue
            out[name] = [
                self._convert(
                    child.fields,
                    row,
                    inbound=True,
                    currency=currency,
                    problems=problems,
                    prefix=f"{name}[{i}].",
                )
                for i, row in enumerate(rows)
            ]
            if child.view is not None:  # in the order the view is pushed in
                out[name] = views.sort_rows(child.view, out[name])
        if problems:
            raise MappingValueError(
                self.spec.system, self.spec.entity, self.hub_id(native), problems
            )
        return out

    def to_native(self, canonical: dict[str, Any]) -> dict[str, Any]:
        """The system's payload for a canonical record (read-only fields left out)."""
        problems: list[FieldProblem] = []
        canonical = self.held_form(canonical)
        currency = self._currency(canonical)
        out = self._convert(
            self.spec.fields, canonical, inbound=False, currency=currency, problems=problems
        )
        key = canonical.get(ENTITIES[self.spec.entity].key_field)  # hub_id, or a product's sku
        if self.spec.key.hub_id_field and key is not None:
            out.setdefault(self.spec.key.hub_id_field, key)
        for name, child in self.spec.children.items():
            rows = canonical.get(name)
            if rows is None:
                continue
            out[child.object] = [
                self._convert(
                    child.fields,
                    row,
                    inbound=False,
                    currency=currency,
                    problems=problems,
                    prefix=f"{name}[{i}].",
                )
                for i, row in enumerate(rows)
            ]
        if problems:
            raise MappingValueError(
                self.spec.system, self.spec.entity, canonical.get("hub_id"), problems
            )
        return out
