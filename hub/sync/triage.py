"""Which open findings a resync may repair, and which need a person.

A resync pushes the golden record to the systems that drifted from it. That is a repair
only where the drifted system does *not* own the differing field: pushing to the owner
would write the hub's older copy over the owner's own data (an invoice amount billing
re-issued, a lifecycle the PIM retired). And a ``conflict`` (a non-owner changed a field
another system owns) is a disagreement between two systems' users, not drift: which value
is right is a business decision. Both are reported per finding, with the reason and what
to do, and never pushed. Shared by ``hub resync --from-findings`` and the auto-fix sensor.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from hub.mapping.spec import MappingSpec, field_owner


class FindingLike(Protocol):
    id: str
    entity: str
    key: str
    system: str
    kind: str
    field: str | None
    expected: Any
    actual: Any


@dataclass(frozen=True)
class NeedsAPerson:
    """An open finding a resync will not push, and why."""

    finding_id: str
    entity: str
    key: str
    system: str
    kind: str
    field: str | None
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def owner_of(specs: Sequence[MappingSpec], entity: str, field: str | None) -> str | None:
    """The system owning ``field`` of ``entity``; a child path (``lines[3].amount_minor``)
    belongs to the owner of its top-level field (``lines``)."""
    if not field:
        return None
    exact = field_owner(list(specs), entity, field)
    if exact is not None:
        return exact
    return field_owner(list(specs), entity, re.split(r"[.\[]", field, maxsplit=1)[0])


def _reason(finding: FindingLike, owner: str | None) -> str | None:
    where = f"{finding.entity} {finding.key} {finding.field}"
    if finding.kind == "conflict":
        return (
            f"conflict: {finding.system} changed {where}, which {owner or 'another system'} "
            f"owns; the owner's value stays. Decide which is right and change it in "
            f"{owner or 'the owner'}: the next sync carries it everywhere"
        )
    if finding.kind == "mismatch" and owner is not None and owner == finding.system:
        return (
            f"{finding.system} owns {where}: it holds {finding.actual!r}, the hub "
            f"{finding.expected!r}. A resync never writes an owner's field; if "
            f"{finding.system} is right, `hub resync --entity {finding.entity} --key "
            f"{finding.key}` re-reads it and carries it to the other systems"
        )
    return None


def triage(
    found: Iterable[FindingLike], specs: Sequence[MappingSpec]
) -> tuple[list[FindingLike], list[NeedsAPerson]]:
    """Split findings into those a push of the golden record repairs and those it must
    not touch (each with its reason)."""
    fixable: list[FindingLike] = []
    held: list[NeedsAPerson] = []
    for finding in found:
        reason = _reason(finding, owner_of(specs, finding.entity, finding.field))
        if reason is None:
            fixable.append(finding)
            continue
        held.append(
            NeedsAPerson(
                finding.id,
                finding.entity,
                finding.key,
                finding.system,
                finding.kind,
                finding.field,
                reason,
            )
        )
    return fixable, held
