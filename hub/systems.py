"""Connectors as the hub uses them: built from their settings *and* from what the hub's
mappings say of each system's native objects (which sObject, which fields, which external
id), so no connector needs to know the hub's mapping format."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from connectors import registry
from connectors.base import Connector, MappedObject
from hub.mapping.spec import MAPPINGS_DIR, MappingSpec, load_all


def mapped_objects(specs: Sequence[MappingSpec], system: str) -> dict[str, MappedObject]:
    """``system``'s native objects by entity: every field a mapping reads or writes, the
    native key and the hub-id field."""
    out: dict[str, MappedObject] = {}
    for spec in specs:
        if spec.system != system:
            continue
        names = {fmap.field.split(".")[0] for fmap in spec.fields.values()}
        names.add(spec.key.system_id_field)
        if spec.key.hub_id_field:
            names.add(spec.key.hub_id_field)
        out[spec.entity] = MappedObject(
            name=spec.object,
            external_id=spec.key.hub_id_field or spec.key.system_id_field,
            fields=tuple(sorted(names)),
        )
    return out


def connect(
    system: str, env: Mapping[str, str], specs: Sequence[MappingSpec] | None = None
) -> Connector:
    """``system``'s connector, configured from ``env`` and the mappings (default: the
    repository's ``mappings/``)."""
    if specs is None:
        specs, _ = load_all(MAPPINGS_DIR)
    return registry.build(system, env, mapped_objects(specs, system))
