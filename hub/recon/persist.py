"""Recording a reconciliation run. The SQL lives in the findings repository
(``hub.store.findings``); this module keeps the names recon and its callers know."""

from __future__ import annotations

from hub.store.findings import Scope
from hub.store.findings import persist_run as persist

__all__ = ["Scope", "persist"]
