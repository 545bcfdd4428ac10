"""SAP S/4HANA OData v2 emulator (see docs/sandbox-sap.md)."""

from sandbox.sap.app import PREFIX, create_app
from sandbox.sap.seed import seed_records
from sandbox.sap.services import SERVICES
from sandbox.sap.settings import SapSettings

__all__ = ["PREFIX", "SERVICES", "SapSettings", "create_app", "seed_records"]
