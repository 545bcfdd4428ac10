"""Reconciliation tests reuse the sync tests' two in-memory systems (a CRM and an ERP
with their mappings) and the store fixture, so golden records come from a real sync."""

from tests.sync.conftest import setup  # noqa: F401 - re-exported fixture
