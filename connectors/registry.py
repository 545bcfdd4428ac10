"""The systems the hub connects to: the one list of them, and how each one's connector is
built from its settings.

Each entry names the connector module and its settings class; the settings class declares
its environment variables (names fixed in ARCHITECTURE.md) once, on its fields (see
``connectors.settings``), and everything else - the module's ``from_env``, the marker that
says a system is configured, the Dagster resources - is derived from that declaration.
Modules are imported lazily, so knowing the systems' names costs no import of a client
library; a deployment without, say, the RFC SDK never imports what it does not use."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from connectors import settings as declared_settings
from connectors.base import Connector, MappedObjects
from connectors.settings import EnvSetting


@dataclass(frozen=True)
class System:
    """One system: ``module`` exposes ``from_env(env, objects) -> Connector`` and the
    settings class ``settings_class`` whose fields declare the variables it reads."""

    name: str
    module: str
    settings_class: str

    def settings_type(self) -> type[Any]:
        settings_type: type[Any] = getattr(
            importlib.import_module(self.module), self.settings_class
        )
        return settings_type

    def settings(self) -> dict[str, EnvSetting]:
        """Settings field -> how it is read from the environment, in field order."""
        return declared_settings.declared(self.settings_type())

    def env_names(self) -> dict[str, str]:
        """Settings field -> environment variable."""
        return declared_settings.env_names(self.settings_type())

    @property
    def marker(self) -> str:
        """The variable whose presence says the system is configured (the one its settings
        cannot do without)."""
        return declared_settings.marker(self.settings_type())


#: Every system, in a stable order (the order of the UI, the CLI and the resources).
SYSTEMS: tuple[System, ...] = (
    System("billing", "connectors.billing", "BillingSettings"),
    System("salesforce", "connectors.salesforce", "SalesforceSettings"),
    System("sap", "connectors.sap", "SapSettings"),
    System("pim", "connectors.pim", "PimSettings"),
    System("wms", "connectors.wms", "WmsSettings"),
)
BY_NAME: dict[str, System] = {system.name: system for system in SYSTEMS}
#: The systems' names: the closed list every other list of systems derives from.
NAMES: tuple[str, ...] = tuple(BY_NAME)


def configured_systems(env: Mapping[str, str]) -> list[str]:
    return [system.name for system in SYSTEMS if env.get(system.marker)]


def build(system: str, env: Mapping[str, str], objects: MappedObjects | None = None) -> Connector:
    """``system``'s connector from its settings in ``env``; ``objects`` are what the hub's
    mappings say of its native objects (see ``hub.systems.connect``)."""
    if system not in BY_NAME:
        raise ValueError(f"unknown system {system!r}; known: {sorted(NAMES)}")
    entry = BY_NAME[system]
    if not env.get(entry.marker):
        raise ValueError(
            f"{system} is not configured: set {entry.marker} (and its credentials), or "
            f"start the sandbox with `hub sandbox up`"
        )
    module = importlib.import_module(entry.module)
    connector: Connector = module.from_env(env, objects)
    return connector
