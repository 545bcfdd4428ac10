"""Reconciliation: golden records vs each system, compared in columns (see docs/reconciliation.md)."""
