"""Dagster resources. Configuration comes from the environment (EnvVar in production, so
secrets never show in the UI); defaults point at the embedded store and the sandbox."""

from __future__ import annotations

from typing import ClassVar

from dagster import ConfigurableResource
from pydantic import Field
from sqlalchemy import Engine

from connectors.base import Connector
from connectors.redact import redact_url
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
    and then to the running sandbox's sandbox.env; in production bind secret fields with
    ``EnvVar("...")`` so their values never appear in the UI or run config."""

    system: ClassVar[str]
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


class BillingResource(_SystemResource):
    system: ClassVar[str] = "billing"
    env_names: ClassVar[dict[str, str]] = {"database_url": "BILLING_DATABASE_URL"}
    database_url: str = Field(default="", description="SQLAlchemy URL of the billing store")


class SalesforceResource(_SystemResource):
    system: ClassVar[str] = "salesforce"
    env_names: ClassVar[dict[str, str]] = {
        "login_url": "SALESFORCE_LOGIN_URL",
        "client_id": "SALESFORCE_CLIENT_ID",
        "client_secret": "SALESFORCE_CLIENT_SECRET",
        "username": "SALESFORCE_USERNAME",
        "private_key_file": "SALESFORCE_PRIVATE_KEY_FILE",
        "api_version": "SALESFORCE_API_VERSION",
        "ca_bundle": "HUB_CA_BUNDLE",
    }
    login_url: str = Field(
        default="", description="OAuth host; token endpoint is <login_url>/services/oauth2/token"
    )
    client_id: str = ""
    client_secret: str = Field(default="", description="bind with EnvVar in production")
    username: str = Field(default="", description="JWT bearer subject")
    private_key_file: str = Field(default="", description="PEM key for the JWT bearer flow")
    api_version: str = ""
    ca_bundle: str = Field(default="", description="PEM bundle trusted for TLS")


class SapResource(_SystemResource):
    system: ClassVar[str] = "sap"
    env_names: ClassVar[dict[str, str]] = {
        "odata_url": "SAP_ODATA_URL",
        "user": "SAP_USER",
        "password": "SAP_PASSWORD",
        "client": "SAP_CLIENT",
        "ca_bundle": "HUB_CA_BUNDLE",
    }
    odata_url: str = Field(
        default="", description="host root; services under /sap/opu/odata/sap/<SERVICE>/"
    )
    user: str = ""
    password: str = Field(default="", description="bind with EnvVar in production")
    client: str = Field(default="", description="sap-client")
    ca_bundle: str = ""


class PimResource(_SystemResource):
    system: ClassVar[str] = "pim"
    env_names: ClassVar[dict[str, str]] = {
        "url": "PIM_URL",
        "client_id": "PIM_CLIENT_ID",
        "secret": "PIM_SECRET",
        "username": "PIM_USERNAME",
        "password": "PIM_PASSWORD",
        "ca_bundle": "HUB_CA_BUNDLE",
    }
    url: str = ""
    client_id: str = ""
    secret: str = Field(default="", description="bind with EnvVar in production")
    username: str = ""
    password: str = Field(default="", description="bind with EnvVar in production")
    ca_bundle: str = ""


class WmsResource(_SystemResource):
    system: ClassVar[str] = "wms"
    env_names: ClassVar[dict[str, str]] = {
        "url": "WMS_URL",
        "api_key": "WMS_API_KEY",
        "ca_bundle": "HUB_CA_BUNDLE",
    }
    url: str = ""
    api_key: str = Field(default="", description="bind with EnvVar in production")
    ca_bundle: str = ""


SYSTEM_RESOURCES: dict[str, type[_SystemResource]] = {
    cls.system: cls
    for cls in (BillingResource, SalesforceResource, SapResource, PimResource, WmsResource)
}
