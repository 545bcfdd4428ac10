"""Reconciliation: golden records vs each system, compared in columns.

See docs/reconciliation.md for the interface and the figures."""
