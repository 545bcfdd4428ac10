"""Akeneo PIM REST API v1 emulator (see docs/sandbox-pim.md)."""

from sandbox.pim.app import API, COLLECTION, TOKEN_PATH, create_app
from sandbox.pim.seed import seed_records
from sandbox.pim.settings import PimSettings

__all__ = ["API", "COLLECTION", "TOKEN_PATH", "PimSettings", "create_app", "seed_records"]
