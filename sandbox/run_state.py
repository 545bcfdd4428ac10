"""What two runs against the same seeded landscape may differ in, and how their states
are made comparable: the crash tests (a killed run against an uninterrupted one) and the
backfill benchmark (a partitioned load against a single run) compare field by field."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from connectors.billing import account_number_for

#: fields every system stamps on its own at write time: they differ between two runs
VOLATILE = frozenset(
    {
        "SystemModstamp",
        "LastModifiedDate",
        "CreatedDate",
        "CreationDate",  # SAP's, the day a record was created: a run past midnight differs
        "LastChangeDateTime",
        "LastChangeDate",
        "LastChangeTime",
        "BusinessPartnerLastChange",  # the SAP connector's customer stamp, from the partner
        "__etag",
        "updated_at",
        "created_at",
        "updated",
        "created",
        "version",
    }
)
#: hub ids the seed gave (sandbox/seed): others were minted at run time (uuid hex)
SEEDED_ID = re.compile(r"^[A-Z]{3}-\d{7}(-|$)")
#: Salesforce ids the seed gave (sandbox/seed/xref.py's pod)
SEEDED_SF_ID = re.compile(r"^[0-9a-zA-Z]{3}5g")


def minted_names(goldens: Iterable[Sequence[Any]], label: str) -> dict[str, str]:
    """Stable names for the hub ids a run minted, from its golden records' ``(entity,
    hub id, data)`` rows: ``label`` formatted with the entity and the record's name
    (``"new {}"`` gives "new customer Fjord Freight AS"). Seeded ids keep their own.
    Values derived from a minted id that do not contain it are named too: billing's number
    for an account the hub creates is "H-" + a hash of a hub id too long for its 32
    characters (connectors.billing.account_number_for), named as the short form would read
    ("H-" + the hub id's name)."""
    names = {
        hub_id: label.format(f"{entity} {data.get('legal_name') or data.get('sku') or ''}")
        for entity, hub_id, data in goldens
        if not SEEDED_ID.match(hub_id)
    }
    for minted, name in list(names.items()):
        number = account_number_for(minted)
        if minted not in number:
            names[number] = f"H-{name}"
    return names


def normalise(value: Any, names: Mapping[str, str]) -> Any:
    """``value`` without the volatile fields, with each id minted at run time replaced by
    its stable name (``names``), also inside derived values ("H-" + hub id)."""
    if isinstance(value, dict):
        return {k: normalise(v, names) for k, v in sorted(value.items()) if k not in VOLATILE}
    if isinstance(value, list):
        return [normalise(v, names) for v in value]
    if isinstance(value, str):
        for minted, name in names.items():
            if minted in value:
                value = value.replace(minted, name)
        return value
    return value
