"""Which records a resync from findings repairs: the one selection behind
``hub resync --from-findings`` and the resync job's ``from_findings`` /
``from_latest_reconciliation`` config.

Open findings of the repairable kinds (``missing``, ``mismatch``), narrowed by entity,
system, kind, finding id, when they were first seen, or to those the last completed
reconciliation observed, are triaged (hub.sync.triage: conflicts and drift on the field's
owner are never pushed, they need a person) and grouped into one resync request per
entity and system, parents first (hub.model.ENTITY_ORDER), with what each finding says
the target holds and what the hub holds, so a dry run can show before -> after.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from hub.mapping.spec import MappingSpec
from hub.model import ENTITY_ORDER
from hub.store import findings as finding_store
from hub.sync.triage import NeedsAPerson, triage

#: drift a push of the golden record may repair; orphans, aggregates and broken references
#: need a person (delete? re-price? re-link?), and so do conflicts and drift on a field's
#: owner (hub.sync.triage): those are reported per finding and never pushed
FIXABLE_KINDS: tuple[str, ...] = ("missing", "mismatch")


class RepairScopeError(ValueError):
    """The selection cannot be made as asked (e.g. no reconciliation has completed)."""


@dataclass
class RepairGroup:
    """One resync request: the records of ``entity`` to push to ``system``."""

    entity: str
    system: str
    keys: list[str]
    findings: list[str]
    #: per hub id, what the findings say changes: field, before (the target's value as
    #: reconciliation saw it, None when the record is missing) and after (the hub's)
    changes: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def as_request(self) -> dict[str, Any]:
        """The shape ``hub resync`` has always used for a scope."""
        return {
            "entity": self.entity,
            "system": self.system,
            "keys": self.keys,
            "findings": self.findings,
        }


@dataclass
class RepairScope:
    """Open findings grouped into resync requests (parents first), the findings no resync
    may push (each with its reason), and the reconciliation run the selection came from
    (``from_latest_reconciliation`` only)."""

    groups: list[RepairGroup]
    needs_a_person: list[NeedsAPerson]
    reconciliation_run: str | None = None

    @property
    def requests(self) -> list[dict[str, Any]]:
        return [group.as_request() for group in self.groups]


def select_repairs(
    session: Session,
    specs: Sequence[MappingSpec],
    *,
    entities: Collection[str] | None = None,
    systems: Collection[str] | None = None,
    kinds: Collection[str] | None = None,
    finding_ids: Collection[str] | None = None,
    opened_since: datetime | None = None,
    latest_reconciliation: bool = False,
) -> RepairScope:
    """The resync requests for the open findings chosen by the filters (``None`` or
    empty: no narrowing; ``kinds`` default: :data:`FIXABLE_KINDS`)."""
    run_id: str | None = None
    if latest_reconciliation:
        run = finding_store.latest_completed_run(session)
        if run is None:
            raise RepairScopeError(
                "no reconciliation has completed yet: run the reconcile job first"
            )
        run_id = run.id
    found = [
        finding
        for entity in (sorted(set(entities)) if entities else [None])
        for finding in finding_store.list_findings(
            session,
            status="open",
            kinds=kinds or FIXABLE_KINDS,
            entity=entity,
            systems=systems or None,
            ids=finding_ids or None,
            opened_since=opened_since,
            observed_in=run_id,
            order="scope",
        )
    ]
    fixable, held = triage(found, specs)
    groups: dict[tuple[str, str], RepairGroup] = {}
    for finding in fixable:
        group = groups.setdefault(
            (finding.entity, finding.system),
            RepairGroup(finding.entity, finding.system, [], []),
        )
        if finding.key not in group.changes:
            group.keys.append(finding.key)
            group.changes[finding.key] = []
        group.findings.append(finding.id)
        group.changes[finding.key].append(
            {
                "finding": finding.id,
                "kind": finding.kind,
                "field": finding.field,
                "before": finding.actual,
                "after": finding.expected,
            }
        )
    for group in groups.values():
        group.keys.sort()

    def parents_first(group: RepairGroup) -> tuple[int, str]:
        # an invoice pushed to Salesforce needs its account and subscription there first
        return (ENTITY_ORDER.index(group.entity), group.system)

    return RepairScope(sorted(groups.values(), key=parents_first), held, run_id)
