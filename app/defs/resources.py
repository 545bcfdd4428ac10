"""Dagster resources. Configuration comes from the environment (EnvVar in production, so
secrets never show in the UI); defaults point at the embedded store and the sandbox."""

from __future__ import annotations

from typing import Any, ClassVar

from dagster import ConfigurableResource
from pydantic import Field
from sqlalchemy import Engine

from connectors import registry
from connectors.base import Connector
from connectors.redact import redact_url
from connectors.settings import EnvSetting
from hub.settings import connection_env, database_url
from hub.store.db import create_store_engine
from hub.systems import connect


class HubStoreResource(ConfigurableResource):
    """The hub store (golden records, xref, cursors, outbox, quarantine, findings)."""

    database_url: str = Field(
        default="",
        description="SQLAlchemy URL; empty means HUB_DATABASE_URL or the SQLite file under "
        "HUB_DATA_DIR. Use EnvVar('HUB_DATABASE_URL') when it carries a password.",
    )

    def url(self) -> str:
        return self.database_url or database_url()

    def safe_url(self) -> str:
        return redact_url(self.url())

    def engine(self) -> Engine:
        return create_store_engine(self.url())


class _SystemResource(ConfigurableResource):
    """Base of the per-system resources. Empty fields fall back to the process environment
    and then to the running sandbox's sandbox.env; secrets are read from there only."""

    system: ClassVar[str]
    #: resource field -> environment variable (from the connector's settings declaration)
    env_names: ClassVar[dict[str, str]]

    def settings(self) -> dict[str, str]:
        env = connection_env()
        for field, name in self.env_names.items():
            value = getattr(self, field)
            if value:
                env[name] = str(value)
        return env

    def connector(self) -> Connector:
        return connect(self.system, self.settings())


def _description(setting: EnvSetting) -> str:
    parts = [setting.variable]
    if setting.doc:
        parts.append(setting.doc)
    return "; ".join(parts)


def _system_resource(system: registry.System) -> type[_SystemResource]:
    """``system``'s resource: one text field per variable its connector's settings
    declare (named as the settings field; empty = the environment's value), except the
    secrets. A secret is never a resource field: it comes only from the environment (where
    a secret store puts it), so neither the Launchpad's scaffold nor a stored run config
    can invite or keep one."""
    public = {field: s for field, s in system.settings().items() if not s.secret}
    namespace: dict[str, Any] = {
        "__module__": __name__,
        "__qualname__": f"{system.name.capitalize()}Resource",
        "__doc__": f"Connection settings of {system.name} (empty fields: the environment; "
        "secrets: only the environment).",
        "__annotations__": {field: str for field in public},
        "system": system.name,
        "env_names": {f: v for f, v in system.env_names().items() if f in public},
        **{
            field: Field(default="", description=_description(setting))
            for field, setting in public.items()
        },
    }
    return type(namespace["__qualname__"], (_SystemResource,), namespace)


#: One resource class per system of the registry, by system name.
SYSTEM_RESOURCES: dict[str, type[_SystemResource]] = {
    system.name: _system_resource(system) for system in registry.SYSTEMS
}
# module attributes too (BillingResource, SalesforceResource, ...), so each class can be
# found by its qualified name, as pickle and Dagster's UI name it
globals().update({cls.__name__: cls for cls in SYSTEM_RESOURCES.values()})


def connectors_from(resources: Any, named: list[str], log: Any) -> dict[str, Connector]:
    """The connectors of the systems an op was ``named`` (empty: every configured one,
    skipping those not configured). A system asked for by name that cannot be reached
    fails the op at once, naming it (no retry can fix configuration)."""
    from dagster import Failure

    from connectors.errors import AuthError, PermanentError

    connectors: dict[str, Connector] = {}
    for system in named or list(SYSTEM_RESOURCES):
        try:
            connectors[system] = getattr(resources, system).connector()
        except (ValueError, AuthError, PermanentError) as exc:
            if named:
                for connector in connectors.values():
                    connector.close()
                raise Failure(description=str(exc), allow_retries=False) from exc
            log.info(f"{system} not configured, skipped: {exc}")
    return connectors
