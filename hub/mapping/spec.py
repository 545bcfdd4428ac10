"""Declarative mappings (``mappings/<system>/<entity>.yaml``) loaded and validated.

A mapping file says which system object an entity lives in, how canonical fields map to
system fields (with value transforms), which fields key the record, and which canonical
fields this system owns. Everything is checked at load, and every error names the file,
the line and the field, because a mapping typo found at 2 a.m. during a sync is too late.
"""

from __future__ import annotations

import copy
import difflib
import pickle
import typing
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Self

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    model_validator,
)

from connectors import registry
from hub import yamlio
from hub.mapping.transforms import REGISTRY, load_code_lists
from hub.mapping.views import ChildView, FieldView
from hub.model import ENTITIES

MAPPINGS_DIR = Path(__file__).resolve().parents[2] / "mappings"

#: The systems a mapping may name (connectors.registry's list).
SYSTEMS = registry.NAMES

#: Transforms a field map may name: the names of the transforms' registry (one list; a
#: transform added there is nameable here).
TRANSFORMS = frozenset(REGISTRY)


class CompareRule(BaseModel):
    """How the reconciliation compares this field (declared beside its mapping).

    exact: equal after mapping (money in minor units is always exact); abs / rel: numeric
    difference within ``tolerance`` (absolute, or relative to the expected value); fold:
    case- and whitespace-insensitive text; timestamp: equal instants whatever the zone,
    within ``tolerance`` seconds. ``claim_only``: the system states this field only when it
    has something to say (SAP reports a payment only once it has cleared the document), so
    a value missing on its side is no claim and no drift."""

    model_config = ConfigDict(extra="forbid")
    rule: Literal["exact", "abs", "rel", "fold", "timestamp"] = "exact"
    tolerance: float = Field(default=0.0, ge=0.0)
    severity: Literal["error", "warning"] | None = None
    claim_only: bool = False


class FieldMap(BaseModel):
    model_config = ConfigDict(extra="forbid")
    field: str = Field(min_length=1)
    transform: list[str] = Field(default_factory=list)
    codes: str | None = None
    currency_field: str = Field(
        default="currency", description="canonical field holding the ISO 4217 code (money)"
    )
    datetime_format: Literal["iso", "salesforce", "akeneo"] = "iso"
    read_only: bool = False
    ref: str | None = Field(
        default=None,
        description="entity whose hub id this field holds canonically and whose id in "
        "this system it holds natively (resolved through the xref table)",
    )
    compare: CompareRule = Field(default_factory=CompareRule)
    view: FieldView | None = Field(
        default=None,
        description="the value is derived from the canonical list of this name, e.g. "
        "item_lines: today's items as text (hub.mapping.views); pushed and compared, "
        "never merged into the golden record",
    )


class KeySpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    hub_id_field: str | None = None
    system_id_field: str


class OnDelete(BaseModel):
    """What this system is told when the record's owner deletes it: ``keep`` it as it is
    (posted invoices), ``deactivate`` it by setting canonical values (``set: {status:
    inactive}``), which must be fields this mapping writes, or ``delete`` it too (its
    connector must be able to delete)."""

    model_config = ConfigDict(extra="forbid")
    action: Literal["keep", "deactivate", "delete"] = "keep"
    set: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _deactivate_sets_something(self) -> Self:
        if self.action == "deactivate" and not self.set:
            raise ValueError("on_delete: deactivate needs `set`: the canonical values to write")
        return self


class MappingSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    system: str
    entity: str
    object: str = Field(min_length=1)
    key: KeySpec
    fields: dict[str, FieldMap]
    owns: list[str] = Field(default_factory=list)
    creates: bool = Field(
        default=False,
        description="whether a record first seen in this system creates a golden record",
    )
    children: dict[str, MappingChild] = Field(default_factory=dict)
    on_delete: OnDelete = Field(
        default_factory=OnDelete,
        description="what this system is told when the record's owner deletes it",
    )
    not_held_when: dict[str, list[str]] = Field(
        default_factory=dict,
        description="the records this system keeps, by canonical field values it excludes: "
        "e.g. {status: [draft]} (SAP posts no draft invoices); the hub pushes nothing else "
        "there and the reconciliation expects nothing else there",
    )
    #: what ``hub.mapping.mapper.Mapper`` works out from this spec once (its
    #: ``_SpecPlan``: the conversion steps per field and direction): a mapper is made per
    #: record planned, the conversions run for every record read
    _plan: Any = PrivateAttr(default=None)

    def holds(self, canonical: dict[str, Any]) -> bool:
        """Whether this system is meant to hold the record at all."""
        return not any(
            canonical.get(name) in excluded for name, excluded in self.not_held_when.items()
        )


class MappingChild(BaseModel):
    """A child collection such as invoice lines or subscription items."""

    model_config = ConfigDict(extra="forbid")
    object: str
    parent_field: str
    fields: dict[str, FieldMap]
    view: ChildView | None = Field(
        default=None,
        description="what the system holds of the list when not the list itself, e.g. "
        "in_effect: the version of each item in effect today, with its period amount "
        "(hub.mapping.views); pushed and compared, never merged into the golden record",
    )


MappingSpec.model_rebuild()


#: The native field names of one system, by object: {object: its field names}.
NativeFields = Mapping[str, Collection[str]]


@dataclass(frozen=True)
class MappingError:
    file: Path
    line: int
    field: str
    message: str
    entity: str = ""
    #: (object, native field) when the error is a field the system does not declare
    missing: tuple[str, str] | None = None

    def __str__(self) -> str:
        entity = f"{self.entity}: " if self.entity else ""
        return f"{self.file}:{self.line}: {entity}{self.field}: {self.message}"


def closest(name: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``choices``, or nothing."""
    close = difflib.get_close_matches(name, sorted(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


class MappingsInvalidError(ValueError):
    def __init__(self, errors: list[MappingError]) -> None:
        self.errors = errors
        super().__init__("\n".join(str(e) for e in errors))


def _lines(node: yaml.Node, path: tuple[str, ...] = ()) -> dict[tuple[str, ...], int]:
    """Map each key path in a YAML document to its 1-based line."""
    out: dict[tuple[str, ...], int] = {path: node.start_mark.line + 1}
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            sub = (*path, str(key_node.value))
            out[sub] = key_node.start_mark.line + 1
            out.update({k: v for k, v in _lines(value_node, sub).items() if k != sub})
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            out.update(_lines(item, (*path, str(i))))
    return out


def _line_for(lines: dict[tuple[str, ...], int], loc: tuple[str, ...]) -> int:
    while loc and loc not in lines:
        loc = loc[:-1]
    return lines.get(loc, 1)


def _canonical_fields(entity: str) -> set[str]:
    """Dotted canonical field paths an entity offers (one level of nesting)."""
    model = ENTITIES[entity]
    fields: set[str] = set()
    for name, info in model.model_fields.items():
        fields.add(name)
        annotation = info.annotation
        for candidate in getattr(annotation, "__args__", (annotation,)):
            if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                fields.update(f"{name}.{sub}" for sub in candidate.model_fields)
    return fields


def load_mapping(
    path: Path, native: Mapping[str, NativeFields] | None = None
) -> tuple[MappingSpec | None, list[MappingError]]:
    """One mapping file and every error in it (native field names checked for the systems
    in ``native``); the spec is ``None`` unless its structure is valid."""
    loaded = _load(path, load_code_lists(path.parent.parent), native)
    return (loaded.spec if loaded.complete else None), loaded.errors


@dataclass
class _Loaded:
    #: the file's spec, or what of it is well-formed (``complete`` False) for the checks
    spec: MappingSpec | None
    errors: list[MappingError]
    lines: dict[tuple[str, ...], int]
    complete: bool


#: What a broken required part of a file is replaced by so the rest can still be checked.
_STAND_INS: dict[str, Any] = {
    "system": "",
    "entity": "",
    "object": "?",
    "key": {"system_id_field": "?"},
    "fields": {},
}


def _load(
    path: Path,
    code_lists: dict[str, dict[str, str]],
    native: Mapping[str, NativeFields] | None = None,
) -> _Loaded:
    """Every error of one file: its structure (each unknown key with the closest valid
    one), then the meaning of every part that is well-formed - a typo in one place never
    hides the errors elsewhere in the file."""
    text = path.read_text()
    try:
        node = yamlio.compose(text)
        data = yamlio.load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = (mark.line + 1) if mark else 1
        return _Loaded(None, [MappingError(path, line, "<yaml>", str(exc))], {}, False)
    lines = _lines(node) if node is not None else {}
    given = data.get("entity") if isinstance(data, dict) else None
    entity = given if isinstance(given, str) and given in ENTITIES else path.stem
    if not isinstance(data, dict):
        message = "a mapping file is a YAML mapping: system, entity, object, key, fields, ..."
        return _Loaded(None, [MappingError(path, 1, "<file>", message, entity)], lines, False)
    errors: list[MappingError] = []
    broken: set[str] = set()
    complete = True
    try:
        spec: MappingSpec | None = MappingSpec.model_validate(data)
    except ValidationError as exc:
        complete = False
        for err in exc.errors(include_url=False, include_input=False):
            loc = tuple(str(p) for p in err["loc"])
            message = err["msg"]
            if err["type"] == "extra_forbidden" and loc:
                model = _model_at(loc[:-1])
                valid = model.model_fields if model is not None else ()
                message = f"unknown key {loc[-1]!r}{closest(loc[-1], valid)}"
            errors.append(MappingError(path, _line_for(lines, loc), ".".join(loc), message, entity))
        spec, broken = _well_formed_part(data, exc)
    if spec is not None:
        raw_fields = data.get("fields")
        names = list(raw_fields) if isinstance(raw_fields, dict) else []
        errors += _semantic_errors(path, spec, lines, code_lists, native, broken, names, entity)
    errors.sort(key=lambda e: e.line)
    return _Loaded(spec, errors, lines, complete)


def _model_at(loc: tuple[str, ...]) -> type[BaseModel] | None:
    """The model a location in a mapping file is validated by (``fields.x``: FieldMap)."""
    model: type[BaseModel] = MappingSpec
    parts = list(loc)
    while parts:
        info = model.model_fields.get(parts.pop(0))
        if info is None:
            return None
        annotation = info.annotation
        if typing.get_origin(annotation) is dict:
            if not parts:
                return None
            parts.pop(0)  # the entry's name
            annotation = typing.get_args(annotation)[1]
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return None
        model = annotation
    return model


def _well_formed_part(
    data: dict[Any, Any], exc: ValidationError
) -> tuple[MappingSpec | None, set[str]]:
    """The file without what failed validation: an unknown key is dropped, a broken field
    map (or child) is left out, a broken required part is stood in for and named in the
    returned set so no check relies on it."""
    part = copy.deepcopy(data)
    broken: set[str] = set()
    for err in exc.errors(include_url=False, include_input=False):
        loc = tuple(err["loc"])
        if not loc:
            return None, broken
        if err["type"] == "extra_forbidden":
            _drop(part, loc)
        elif loc[0] == "fields" and len(loc) >= 2:
            _drop(part, loc[:2])
        elif loc[0] == "children" and len(loc) >= 4 and loc[2] == "fields":
            _drop(part, loc[:4])
        elif loc[0] == "children" and len(loc) >= 2:
            _drop(part, loc[:2])
        else:
            top = str(loc[0])
            broken.add(top)
            if top in _STAND_INS:
                part[top] = copy.deepcopy(_STAND_INS[top])
            else:
                part.pop(loc[0], None)  # it has a default
    try:
        return MappingSpec.model_validate(part), broken
    except ValidationError:
        return None, broken


def _drop(data: Any, loc: tuple[Any, ...]) -> None:
    for step in loc[:-1]:
        if not isinstance(data, dict) or step not in data:
            return
        data = data[step]
    if isinstance(data, dict):
        data.pop(loc[-1], None)


def _semantic_errors(
    path: Path,
    spec: MappingSpec,
    lines: dict[tuple[str, ...], int],
    code_lists: dict[str, dict[str, str]],
    native: Mapping[str, NativeFields] | None = None,
    broken: Collection[str] = (),
    field_names: Iterable[str] = (),
    entity: str = "",
) -> list[MappingError]:
    errors: list[MappingError] = []

    def err(
        loc: tuple[str, ...], field: str, message: str, missing: tuple[str, str] | None = None
    ) -> None:
        errors.append(MappingError(path, _line_for(lines, loc), field, message, entity, missing))

    if "system" not in broken and spec.system not in SYSTEMS:
        err(
            ("system",),
            "system",
            f"unknown system {spec.system!r}; known: {', '.join(SYSTEMS)}"
            + closest(spec.system, SYSTEMS),
        )
    if "system" not in broken and native is not None and spec.system in native:
        _check_native(spec, native[spec.system], err, broken)
    if "entity" in broken:
        return errors
    if spec.entity not in ENTITIES:
        err(
            ("entity",),
            "entity",
            f"unknown entity {spec.entity!r}; known: {', '.join(ENTITIES)}"
            + closest(spec.entity, ENTITIES),
        )
        return errors
    expected = Path(spec.system) / f"{spec.entity}.yaml"
    if "system" not in broken and path.parts[-2:] != expected.parts:
        err((), "<file>", f"a {spec.system}/{spec.entity} mapping belongs in mappings/{expected}")
    canonical = _canonical_fields(spec.entity) | {f"external_ids.{s}" for s in SYSTEMS}
    for name in dict.fromkeys([*field_names, *spec.fields]):
        if name not in canonical:
            err(
                ("fields", name),
                f"fields.{name}",
                f"not a field of canonical {spec.entity}{closest(name, canonical)}",
            )
    for name, fmap in spec.fields.items():
        if fmap.ref is not None and fmap.ref not in ENTITIES:
            err(
                ("fields", name, "ref"),
                f"fields.{name}.ref",
                f"unknown entity {fmap.ref!r}{closest(fmap.ref, ENTITIES)}",
            )
        for i, transform in enumerate(fmap.transform):
            if transform not in TRANSFORMS:
                err(
                    ("fields", name, "transform", str(i)),
                    f"fields.{name}.transform",
                    f"unknown transform {transform!r}"
                    + (
                        closest(transform, TRANSFORMS)
                        or f"; known: {', '.join(sorted(TRANSFORMS))}"
                    ),
                )
        if "code" in fmap.transform and not fmap.codes:
            err(("fields", name), f"fields.{name}.codes", "the 'code' transform needs 'codes'")
        if "money_decimal" in fmap.transform and fmap.compare.rule != "exact":
            err(
                ("fields", name, "compare"),
                f"fields.{name}.compare",
                "money in minor units is compared exactly; remove the tolerance",
            )
        if fmap.codes and fmap.codes not in code_lists:
            err(
                ("fields", name, "codes"),
                f"fields.{name}.codes",
                f"no code list mappings/codes/{fmap.codes}.yaml{closest(fmap.codes, code_lists)}",
            )
    if "fields" not in broken:
        mapped = set(field_names) | set(spec.fields)
        for i, owned in enumerate(spec.owns):
            if owned not in mapped:
                err(
                    ("owns", str(i)),
                    f"owns.{owned}",
                    "an owned field must also be mapped here" + closest(owned, mapped),
                )
        for name in spec.on_delete.set:
            if name not in spec.fields:
                err(
                    ("on_delete", "set", name),
                    f"on_delete.set.{name}",
                    "a value set on delete must be a field this mapping writes"
                    + closest(name, spec.fields),
                )
    return errors


def _check_native(
    spec: MappingSpec,
    objects: NativeFields,
    err: Callable[..., None],
    broken: Collection[str],
) -> None:
    """Report through ``err`` each object and native field name the file uses that
    ``objects`` (the system's declaration) lacks, with the closest declared one."""

    def name(loc: tuple[str, ...], field: str, value: str, obj: str) -> None:
        known = objects[obj]
        if value not in known:
            err(
                loc,
                field,
                f"{value!r} is not a field of {spec.system} {obj}{closest(value, known)}",
                (obj, value),
            )

    def obj(loc: tuple[str, ...], field: str, value: str) -> bool:
        if value in objects:
            return True
        err(loc, field, f"{spec.system} has no object {value!r}{closest(value, objects)}")
        return False

    if "object" not in broken and obj(("object",), "object", spec.object):
        if "key" not in broken:
            for attr in ("hub_id_field", "system_id_field"):
                value = getattr(spec.key, attr)
                if value is not None:
                    name(("key", attr), f"key.{attr}", value, spec.object)
        for field, fmap in spec.fields.items():
            name(("fields", field, "field"), f"fields.{field}.field", fmap.field, spec.object)
    for child_name, child in spec.children.items():
        where = ("children", child_name)
        if not obj((*where, "object"), f"children.{child_name}.object", child.object):
            continue
        name(
            (*where, "parent_field"),
            f"children.{child_name}.parent_field",
            child.parent_field,
            child.object,
        )
        for field, fmap in child.fields.items():
            name(
                (*where, "fields", field, "field"),
                f"children.{child_name}.fields.{field}.field",
                fmap.field,
                child.object,
            )


#: load_all's last result per folder, pickled, with the contents it was parsed from
_LOADED: dict[Path, tuple[int, bytes]] = {}


def _contents_hash(root: Path) -> int:
    """A hash of every mapping and code list file's name and bytes under ``root``: reading
    them costs a fraction of a millisecond, parsing and validating them ~20 ms."""
    return hash(tuple((str(p), p.read_bytes()) for p in sorted(root.glob("*/*.yaml"))))


def load_all(
    root: Path = MAPPINGS_DIR, native: Mapping[str, NativeFields] | None = None
) -> tuple[list[MappingSpec], list[MappingError]]:
    """Load every mapping under ``root`` and check cross-file rules (one owner per field).
    Every error of every file is reported; with ``native`` ({system: {object: fields}}),
    the native field names of those systems' mappings are checked too.

    Every connector, engine and reconciliation loads the mappings (a sync: seven times), so
    the result is kept per folder while the files' contents are unchanged; callers get
    their own copy (an edit of the files is seen by the next call). The copy is unpickled
    from the parsed result: half the CPU of a deep copy, which made a sync job of a
    20-customer book spend ~8% of its CPU copying mappings (80 loads per job)."""
    if native is not None:
        return _load_all(root, native)
    key = _contents_hash(root)
    cached = _LOADED.get(root)
    if cached is None or cached[0] != key:
        cached = (key, pickle.dumps(_load_all(root, None), pickle.HIGHEST_PROTOCOL))
        _LOADED[root] = cached
    loaded: tuple[list[MappingSpec], list[MappingError]] = pickle.loads(cached[1])  # noqa: S301 - our own bytes
    return loaded


def _load_all(
    root: Path, native: Mapping[str, NativeFields] | None
) -> tuple[list[MappingSpec], list[MappingError]]:
    specs: list[MappingSpec] = []
    errors: list[MappingError] = []
    owners: dict[tuple[str, str], Path] = {}
    code_lists = load_code_lists(root)
    for path in sorted(root.glob("*/*.yaml")):
        if path.parent.name == "codes":
            continue
        loaded = _load(path, code_lists, native)
        errors.extend(loaded.errors)
        spec = loaded.spec
        if spec is None:
            continue
        if loaded.complete:
            specs.append(spec)
        for i, owned in enumerate(spec.owns):
            other = owners.setdefault((spec.entity, owned), path)
            if other != path:
                errors.append(
                    MappingError(
                        path,
                        _line_for(loaded.lines, ("owns", str(i))),
                        f"owns.{owned}",
                        f"{spec.entity}.{owned} is already owned by {other}",
                        spec.entity,
                    )
                )
    return specs, errors


def load_specs(root: Path = MAPPINGS_DIR) -> list[MappingSpec]:
    """Every mapping, or MappingsInvalidError naming each problem (what the engine, the
    reconciliation and the repair triage need: nothing runs on half a set of mappings)."""
    specs, errors = load_all(root)
    if errors:
        raise MappingsInvalidError(errors)
    return specs


def check(
    root: Path = MAPPINGS_DIR, native: Mapping[str, NativeFields] | None = None
) -> list[MappingError]:
    return load_all(root, native)[1]


def field_owner(specs: list[MappingSpec], entity: str, field: str) -> str | None:
    for spec in specs:
        if spec.entity == entity and field in spec.owns:
            return spec.system
    return None


def as_dict(spec: MappingSpec) -> dict[str, Any]:
    return spec.model_dump()
