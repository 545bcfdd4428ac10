"""`hub systems check`: before the first sync touches anything, connect to every
configured system, read what it declares (Salesforce's describe, SAP's ``$metadata``, the
PIM's attributes, billing's schema) and name every mapped field it lacks.

Mappings are checked against the emulators offline by ``hub mappings check``; this is the
same check against the systems the hub is pointed at, where a customer's org or S/4 may
lack a custom field, an extension or an org setting the mappings assume."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from connectors import registry
from connectors.base import Connector, DescribesFields
from connectors.errors import ConnectorError
from hub.mapping.native import declared
from hub.mapping.spec import MAPPINGS_DIR, MappingError, NativeFields, load_all
from hub.systems import connect

#: What a missing field asks of the person reading the report.
FIX = (
    "add the field to the system (a custom field or extension) or point the mapping at a "
    "field the system has"
)


@dataclass
class SystemReport:
    """One system's answer: reachable or not, what was checked, and every problem."""

    system: str
    reachable: bool
    detail: str
    objects: int = 0
    problems: list[str] = field(default_factory=list)
    #: not configured here: nothing to check (a sync skips it too)
    skipped: bool = False

    @property
    def ok(self) -> bool:
        return self.skipped or (self.reachable and not self.problems)


def check_systems(
    env: Mapping[str, str], systems: Sequence[str] | None = None, root: Path = MAPPINGS_DIR
) -> list[SystemReport]:
    """A report per mapped system (``systems``: only these), in registry order."""
    specs, _ = load_all(root)
    mapped = {spec.system for spec in specs}
    wanted = [s for s in registry.NAMES if s in mapped and (not systems or s in systems)]
    configured = set(registry.configured_systems(env))
    return [
        _check(system, env, root)
        if system in configured
        else SystemReport(
            system,
            False,
            f"not configured (set {registry.BY_NAME[system].marker} and its credentials)",
            skipped=True,
        )
        for system in wanted
    ]


def _check(system: str, env: Mapping[str, str], root: Path) -> SystemReport:
    try:
        connector = connect(system, env, load_all(root)[0])
    except (ValueError, ConnectorError) as exc:
        return SystemReport(system, False, f"cannot be built: {exc}")
    try:
        return check_connector(system, connector, root)
    finally:
        connector.close()


def check_connector(system: str, connector: Connector, root: Path = MAPPINGS_DIR) -> SystemReport:
    """``system``'s report through a connector already built (the Dagster job's come from
    its resources); the caller closes it."""
    try:
        health = connector.health()
        if not health.ok:
            # the detail says why (refused login, TLS, no answer): not always "unreachable"
            return SystemReport(system, False, f"health check failed: {health.detail}")
        took = f"reachable ({health.latency_ms:.0f} ms)" if health.latency_ms else "reachable"
        if isinstance(connector, DescribesFields):
            native: NativeFields = dict(connector.native_fields())
        elif system in declared():
            native = dict(declared()[system])
        else:
            return SystemReport(system, True, f"{took}; it publishes no field list to check")
    except ConnectorError as exc:
        return SystemReport(system, False, f"metadata could not be read: {exc}")
    errors = [e for e in load_all(root, {system: native})[1] if _of(e, root, system)]
    return SystemReport(
        system, True, took, len(native), [f"{e}; {_fix(connector, e)}" for e in errors]
    )


def _fix(connector: Connector, error: MappingError) -> str:
    """The connector's own advice for a field it knows the story of (SAP's hub id is an
    extension field named by the customer: SAP_HUB_ID_FIELD), else the general one."""
    advise = getattr(connector, "missing_field_fix", None)
    told = advise(*error.missing) if callable(advise) and error.missing else None
    return told or FIX


def _of(error: MappingError, root: Path, system: str) -> bool:
    return error.file.parent == root / system
