"""The hub store: golden records and the bookkeeping that makes syncs replay safely."""

from hub.store.db import create_store_engine, session_factory
from hub.store.models import (
    Base,
    Cursor,
    Finding,
    FindingObservation,
    Fingerprint,
    GoldenRecord,
    Lock,
    OutboxEntry,
    QuarantineEntry,
    ReconciliationRun,
    Xref,
)

__all__ = [
    "Base",
    "Cursor",
    "Finding",
    "FindingObservation",
    "Fingerprint",
    "GoldenRecord",
    "Lock",
    "OutboxEntry",
    "QuarantineEntry",
    "ReconciliationRun",
    "Xref",
    "create_store_engine",
    "session_factory",
]
