"""How the hub fingerprints a system's copy of a record, for echo suppression.

A record's fingerprint is taken over what the system holds of it in canonical terms (its
:func:`projection`), both when the hub reads it and when it pushes it: the echo of the
hub's own push then fingerprints like the push and is not propagated again. Besides the
system's own slot, a record may have a fingerprint in two more slots (:func:`with_owned`,
:func:`with_claims`) for what the push fingerprint cannot see."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hub.mapping.mapper import Mapper
from hub.store import repo
from hub.sync.merge import flatten

#: the canonical field under which a record carries its ids in other systems
EXTERNAL_IDS = "external_ids"
#: The fingerprint of a record read without its hub id (it matches no push).
NO_HUB_ID = "no hub id"


def with_owned(system: str) -> str:
    """The fingerprint slot of the fields a system owns but the hub never writes to it."""
    return f"{system}~owned"


def with_claims(system: str) -> str:
    """The fingerprint slot of a system's record including the other systems' ids it
    carries that the hub did not know when it read it."""
    return f"{system}~claims"


def projection(mapper: Mapper, canonical: Mapping[str, Any]) -> dict[str, Any]:
    """What this system holds of a record, in canonical terms: the basis of its
    fingerprint both when we read it and when we push to it (echo suppression)."""
    return flat_projection(mapper, flatten(canonical))


def flat_projection(mapper: Mapper, flat: Mapping[str, Any]) -> dict[str, Any]:
    """:func:`projection` of a record already flattened (``hub.sync.merge.flatten``)."""
    return {f: value for f in mapper.writable if (value := flat.get(f)) is not None}


def push_projection(
    mapper: Mapper, golden: Mapping[str, Any], flat: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The :func:`projection` of a push of the golden record: of what the system is sent
    (``Mapper.held_form``: a child list it holds as a view, as that view), so the push
    fingerprints like the record read back. ``flat``: ``golden`` already flattened, for a
    caller projecting one record for several systems; a system without views is sent
    the record as it is, so its projection is taken from that."""
    if flat is not None and not mapper.view_names:
        return flat_projection(mapper, flat)
    return projection(mapper, mapper.held_form(dict(golden)))


def known_ids_only(
    partial: Mapping[str, Any], held: repo.BatchRows, hub_id: str
) -> Mapping[str, Any]:
    """A system's record as the hub can judge it: other systems' ids it carries count only
    where the hub knows them (an SAP number on an Account is never 'cleared' by the hub
    just because SAP is not connected), so the echo of a push fingerprints like the push."""
    carried = partial.get(EXTERNAL_IDS)
    if not carried:
        return partial
    known = held.external_ids(hub_id)
    return {**partial, EXTERNAL_IDS: {k: v for k, v in carried.items() if k in known}}


def with_flat_ids(flat: Mapping[str, Any], ids: Mapping[str, Any]) -> dict[str, Any]:
    """A flattened record with its other systems' ids replaced by ``ids``: equals
    flattening the record with ``EXTERNAL_IDS`` set to ``ids``."""
    prefix = EXTERNAL_IDS + "."
    out = {k: v for k, v in flat.items() if k != EXTERNAL_IDS and not k.startswith(prefix)}
    out.update(flatten({EXTERNAL_IDS: ids}))
    return out
