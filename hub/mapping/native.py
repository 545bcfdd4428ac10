"""Native field names the hub knows without asking a system, for ``hub mappings check``.

Only a declaration in our own code counts, never a guess. Billing's is exact: the billing
connector hands over each table's columns as they are in ``connectors/billing_schema.py``,
plus the references it resolves to hub ids (``account_hub_id`` ...) and the child rows it
nests under their table's name (``invoice_lines``). The other systems declare their
objects only to the running system itself (Salesforce's describe, SAP's ``$metadata``,
the PIM's attributes), so the CLI adds the sandbox emulators' declarations when the
sandbox is installed.
"""

from __future__ import annotations

from collections.abc import Mapping

from connectors import billing, billing_schema
from hub.mapping.spec import NativeFields


def _billing() -> dict[str, frozenset[str]]:
    tables = billing_schema.metadata.tables
    out: dict[str, frozenset[str]] = {}
    for entity, where in billing.TABLES.items():
        out[where.table] = frozenset(
            {column.name for column in tables[where.table].columns}
            | {reference.native for reference in billing.REFERENCES.get(entity, ())}
            | {child.table for child in where.children}
        )
        for child in where.children:
            out[child.table] = frozenset(column.name for column in tables[child.table].columns)
    return out


#: billing's objects (tables) and the native fields its connector reads and writes
BILLING_NATIVE: Mapping[str, frozenset[str]] = _billing()


def declared() -> dict[str, NativeFields]:
    """{system: {object: native field names}} for the systems our code declares."""
    return {"billing": BILLING_NATIVE}
