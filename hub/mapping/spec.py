"""Declarative mappings (``mappings/<system>/<entity>.yaml``) loaded and validated.

A mapping file says which system object an entity lives in, how canonical fields map to
system fields (with value transforms), which fields key the record, and which canonical
fields this system owns. Everything is checked at load, and every error names the file,
the line and the field, because a mapping typo found at 2 a.m. during a sync is too late.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from connectors import registry
from hub import yamlio
from hub.mapping.transforms import load_code_lists
from hub.model import ENTITIES

MAPPINGS_DIR = Path(__file__).resolve().parents[2] / "mappings"

#: The systems a mapping may name (connectors.registry's list).
SYSTEMS = registry.NAMES

#: Transforms a field map may name; parameters are checked by the sync engine's registry.
TRANSFORMS = frozenset(
    {
        "trim",
        "upper",
        "lower",
        "code",
        "money_decimal",
        "date",
        "datetime",
        "int",
        "bool",
        "str",
        "json",
        "akeneo_value",
    }
)


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


class KeySpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    hub_id_field: str | None = None
    system_id_field: str


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
    not_held_when: dict[str, list[str]] = Field(
        default_factory=dict,
        description="the records this system keeps, by canonical field values it excludes: "
        "e.g. {status: [draft]} (SAP posts no draft invoices); the hub pushes nothing else "
        "there and the reconciliation expects nothing else there",
    )

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


MappingSpec.model_rebuild()


@dataclass(frozen=True)
class MappingError:
    file: Path
    line: int
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.field}: {self.message}"


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


def load_mapping(path: Path) -> tuple[MappingSpec | None, list[MappingError]]:
    spec, errors, _ = _load(path, load_code_lists(path.parent.parent))
    return spec, errors


def _load(
    path: Path, code_lists: dict[str, dict[str, str]]
) -> tuple[MappingSpec | None, list[MappingError], dict[tuple[str, ...], int]]:
    text = path.read_text()
    try:
        node = yamlio.compose(text)
        data = yamlio.load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        return None, [MappingError(path, (mark.line + 1) if mark else 1, "<yaml>", str(exc))], {}
    lines = _lines(node) if node is not None else {}
    try:
        spec = MappingSpec.model_validate(data)
    except ValidationError as exc:
        errors = []
        for err in exc.errors(include_url=False, include_input=False):
            loc = tuple(str(p) for p in err["loc"])
            errors.append(MappingError(path, _line_for(lines, loc), ".".join(loc), err["msg"]))
        return None, errors, lines
    return spec, _semantic_errors(path, spec, lines, code_lists), lines


def _semantic_errors(
    path: Path,
    spec: MappingSpec,
    lines: dict[tuple[str, ...], int],
    code_lists: dict[str, dict[str, str]],
) -> list[MappingError]:
    errors: list[MappingError] = []

    def err(loc: tuple[str, ...], field: str, message: str) -> None:
        errors.append(MappingError(path, _line_for(lines, loc), field, message))

    if spec.system not in SYSTEMS:
        err(("system",), "system", f"unknown system {spec.system!r}; known: {list(SYSTEMS)}")
    if spec.entity not in ENTITIES:
        err(("entity",), "entity", f"unknown entity {spec.entity!r}; known: {sorted(ENTITIES)}")
        return errors
    expected = Path(spec.system) / f"{spec.entity}.yaml"
    if path.parts[-2:] != expected.parts:
        err((), "<file>", f"a {spec.system}/{spec.entity} mapping belongs in mappings/{expected}")
    canonical = _canonical_fields(spec.entity) | {f"external_ids.{s}" for s in SYSTEMS}
    for name, fmap in spec.fields.items():
        if fmap.ref is not None and fmap.ref not in ENTITIES:
            err(("fields", name, "ref"), f"fields.{name}.ref", f"unknown entity {fmap.ref!r}")
        if name not in canonical:
            err(("fields", name), f"fields.{name}", f"not a field of canonical {spec.entity}")
        for i, transform in enumerate(fmap.transform):
            if transform not in TRANSFORMS:
                err(
                    ("fields", name, "transform", str(i)),
                    f"fields.{name}.transform",
                    f"unknown transform {transform!r}; known: {sorted(TRANSFORMS)}",
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
                f"no code list mappings/codes/{fmap.codes}.yaml",
            )
    for i, owned in enumerate(spec.owns):
        if owned not in spec.fields:
            err(("owns", str(i)), f"owns.{owned}", "an owned field must also be mapped here")
    return errors


def load_all(root: Path = MAPPINGS_DIR) -> tuple[list[MappingSpec], list[MappingError]]:
    """Load every mapping under ``root`` and check cross-file rules (one owner per field)."""
    specs: list[MappingSpec] = []
    errors: list[MappingError] = []
    owners: dict[tuple[str, str], Path] = {}
    code_lists = load_code_lists(root)
    for path in sorted(root.glob("*/*.yaml")):
        if path.parent.name == "codes":
            continue
        spec, file_errors, lines = _load(path, code_lists)
        errors.extend(file_errors)
        if spec is None:
            continue
        specs.append(spec)
        for i, owned in enumerate(spec.owns):
            other = owners.setdefault((spec.entity, owned), path)
            if other != path:
                errors.append(
                    MappingError(
                        path,
                        _line_for(lines, ("owns", str(i))),
                        f"owns.{owned}",
                        f"{spec.entity}.{owned} is already owned by {other}",
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


def check(root: Path = MAPPINGS_DIR) -> list[MappingError]:
    return load_all(root)[1]


def field_owner(specs: list[MappingSpec], entity: str, field: str) -> str | None:
    for spec in specs:
        if spec.entity == entity and field in spec.owns:
            return spec.system
    return None


def as_dict(spec: MappingSpec) -> dict[str, Any]:
    return spec.model_dump()
