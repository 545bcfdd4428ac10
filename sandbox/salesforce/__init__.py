"""Salesforce emulator: OAuth 2.0, REST API, SOQL, sObject Collections, Bulk API 2.0 and 1.0,
served over HTTPS (see docs/sandbox-salesforce.md)."""

from sandbox.salesforce.app import create_app
from sandbox.salesforce.schema import OBJECTS
from sandbox.salesforce.seed import seed_records
from sandbox.salesforce.settings import SalesforceSettings

__all__ = ["OBJECTS", "SalesforceSettings", "create_app", "seed_records"]
