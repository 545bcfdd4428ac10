"""Which connector class serves which system, and how it is built from settings.

Each connector module exposes ``from_env(env: Mapping[str, str]) -> Connector`` reading
the variable names fixed in ARCHITECTURE.md; modules are imported lazily so a deployment
without, say, the RFC SDK never imports what it does not use."""

from __future__ import annotations

import importlib
from collections.abc import Mapping

from connectors.base import Connector, MappedObjects

MODULES: dict[str, str] = {
    "billing": "connectors.billing",
    "salesforce": "connectors.salesforce",
    "sap": "connectors.sap",
    "pim": "connectors.pim",
    "wms": "connectors.wms",
}

#: The variable whose presence says a system is configured.
MARKERS: dict[str, str] = {
    "billing": "BILLING_DATABASE_URL",
    "salesforce": "SALESFORCE_LOGIN_URL",
    "sap": "SAP_ODATA_URL",
    "pim": "PIM_URL",
    "wms": "WMS_URL",
}


def configured_systems(env: Mapping[str, str]) -> list[str]:
    return [system for system, marker in MARKERS.items() if env.get(marker)]


def build(system: str, env: Mapping[str, str], objects: MappedObjects | None = None) -> Connector:
    """``system``'s connector from its settings in ``env``; ``objects`` are what the hub's
    mappings say of its native objects (see ``hub.systems.connect``)."""
    if system not in MODULES:
        raise ValueError(f"unknown system {system!r}; known: {sorted(MODULES)}")
    if not env.get(MARKERS[system]):
        raise ValueError(
            f"{system} is not configured: set {MARKERS[system]} (and its credentials), or "
            f"start the sandbox with `hub sandbox up`"
        )
    module = importlib.import_module(MODULES[system])
    connector: Connector = module.from_env(env, objects)
    return connector
