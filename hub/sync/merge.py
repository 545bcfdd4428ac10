"""Merging one system's view of a record into the golden record, field by field.

Ownership decides: the owning system's value always wins; a different value from a
non-owner is a *conflict* (reported, and the owner's value is pushed back to that system);
for unowned fields the newest change wins. A non-owner may fill a field the golden record
does not have yet (e.g. a Salesforce account arrives before SAP has a tax id): the value is
provisional and the owner's first value replaces it without a conflict.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

#: Canonical fields whose value is a list of child records: merged as one field.
LIST_FIELDS = frozenset({"items", "lines"})


#: Values that are never nested records, looked up by exact type before any ``isinstance``
#: (the ``Mapping`` check, an ABC, costs ten times a concrete type's, and :func:`flatten`
#: runs several times per record the initial load reads); a subclass of one of them (a
#: ``bool``, a ``str`` enum) is a leaf too.
_LEAF_TYPES = frozenset({str, int, float, bool, list, tuple, type(None)})
_LEAVES = tuple(_LEAF_TYPES)


def _nested(value: Any) -> bool:
    """Whether ``value``, of a type not in _LEAF_TYPES, is a nested record."""
    return isinstance(value, dict) or (
        not isinstance(value, _LEAVES) and isinstance(value, Mapping)
    )


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'a': {'b': 1}, 'lines': [...]} -> {'a.b': 1, 'lines': [...]}."""
    out: dict[str, Any] = {}
    leaf_types = _LEAF_TYPES
    for key, value in data.items():
        if value and type(value) not in leaf_types and key not in LIST_FIELDS and _nested(value):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}" if prefix else key] = value
    return out


def unflatten(flat: Mapping[str, Any]) -> dict[str, Any]:
    """Inverse of :func:`flatten`; ``a: None`` next to ``a.b: 1`` yields ``a: {b: 1}``:
    a nested field set beside its parent's own value wins, in whichever order they come
    (so nothing is sorted: the merge rebuilds every record it creates with this)."""
    out: dict[str, Any] = {}
    for path, value in flat.items():
        if "." not in path:
            if not isinstance(out.get(path), dict):
                out[path] = value
            continue
        *parents, last = path.split(".")
        target = out
        for part in parents:
            inner = target.get(part)
            if not isinstance(inner, dict):
                inner = target[part] = {}
            target = inner
        if not isinstance(target.get(last), dict):
            target[last] = value
    return out


def collapse_empty(node: dict[str, Any]) -> dict[str, Any]:
    """Nested values with no field set (an address nobody gave) become None, as the
    canonical model writes them."""
    for key, value in node.items():
        if isinstance(value, dict) and key not in LIST_FIELDS:
            inner = collapse_empty(value)
            node[key] = None if inner and all(v is None for v in inner.values()) else inner
    return node


@dataclass(frozen=True)
class Conflict:
    field: str
    owner: str
    system: str
    golden_value: Any
    system_value: Any


@dataclass
class MergeResult:
    data: dict[str, Any]
    field_meta: dict[str, dict[str, Any]]
    changed: list[str] = field(default_factory=list)
    conflicts: list[Conflict] = field(default_factory=list)

    @property
    def is_new_or_changed(self) -> bool:
        return bool(self.changed)


_ABSENT = object()  # a field the golden record does not have at all
_NO_INFO: Mapping[str, Any] = MappingProxyType({})  # a field no system has set yet


def _not_older(changed_at: datetime, recorded: Any) -> bool:
    """Whether a change stamped ``changed_at`` is at least as new as the field's recorded
    one: compared as instants, not as text (``...+00:00`` and ``...Z``, or a stamp with
    and without microseconds, sort wrongly as strings)."""
    if not recorded:
        return True
    at = datetime.fromisoformat(str(recorded))
    return _aware(changed_at) >= _aware(at)


def _aware(stamp: datetime) -> datetime:
    return stamp if stamp.tzinfo is not None else stamp.replace(tzinfo=UTC)


def merge(
    golden: Mapping[str, Any] | None,
    field_meta: Mapping[str, Mapping[str, Any]] | None,
    incoming: Mapping[str, Any],
    *,
    system: str,
    changed_at: datetime,
    owners: Mapping[str, str],
    flattened: bool = False,
) -> MergeResult:
    """Merge ``incoming`` (canonical, possibly partial) from ``system`` into ``golden``.

    ``owners`` maps flat canonical field names to their owning system; ``field_meta``
    records per field which system set it, when, and whether that value is provisional.
    ``flattened``: ``incoming`` is already flat (:func:`flatten`; the sync flattens each
    record it reads once, for its fingerprints and its merge)."""
    flat = incoming if flattened else flatten(incoming)
    stamp = changed_at.isoformat()
    if golden is None and not field_meta:
        return _first_copy(flat, system, stamp, owners)
    current = flatten(golden or {})
    # entries are replaced, never changed in place: a shallow copy keeps the caller's
    meta: dict[str, Any] = dict(field_meta or {})
    result = MergeResult(data={}, field_meta=meta)
    for name, value in flat.items():
        owner = owners.get(name)
        old = current.get(name, _ABSENT)
        present = old is not _ABSENT
        if not present:
            old = None
        has_value = old is not None
        differs = value != old  # once: a child list compares item by item
        info = meta.get(name, _NO_INFO)
        if owner is None:
            take = not has_value or _not_older(changed_at, info.get("at"))
        elif owner == system:
            take = True
        elif not has_value or info.get("provisional"):
            take = True  # provisional until the owner speaks
        else:
            take = False
            if differs:
                result.conflicts.append(Conflict(name, owner, system, old, value))
        if not take:
            continue
        provisional = owner is not None and owner != system
        if differs or not present:
            result.changed.append(name)
            current[name] = value
        if differs or info.get("system") != system or provisional != bool(info.get("provisional")):
            meta[name] = _set_by(system, stamp, provisional)
    # nothing changed: the golden record as it is (rebuilding it from the flat form would
    # give the same dict, at a cost the initial load pays for most records it reads)
    result.data = unflatten(current) if result.changed or golden is None else dict(golden)
    return result


def _set_by(system: str, stamp: str, provisional: bool) -> dict[str, Any]:
    """A field's provenance entry: the system that set it, when, and whether it holds
    the value only until the field's owner speaks."""
    if provisional:
        return {"system": system, "at": stamp, "provisional": True}
    return {"system": system, "at": stamp}


def _first_copy(
    flat: Mapping[str, Any], system: str, stamp: str, owners: Mapping[str, str]
) -> MergeResult:
    """:func:`merge` into no golden record: every field is taken as sent, a non-owner's
    value provisionally, and none can conflict - what the field-by-field walk concludes
    for each field, without weighing an old value against the new one (the initial load
    merges a third of the records it reads this way, one per golden record)."""
    meta: dict[str, Any] = {}
    for name in flat:
        owner = owners.get(name)
        meta[name] = _set_by(system, stamp, owner is not None and owner != system)
    return MergeResult(data=unflatten(flat), field_meta=meta, changed=list(flat))
