"""The comparison two runs against one seeded landscape rely on (sandbox.run_state): what
a system stamps on a record at write time must not tell two runs apart, or the crash
tests fail whenever their reference run and the killed runs fall on different days."""

from __future__ import annotations

import datetime as dt

import pytest

from sandbox.run_state import normalise
from sandbox.sap.edm import EntitySet
from sandbox.sap.repository import STAMP, apply_stamp
from sandbox.sap.services import SERVICES

#: every SAP entity set whose documents carry system-maintained stamps
STAMPED_SETS = [
    es
    for svc in SERVICES.values()
    for es in svc.sets.values()
    if {"CreationDate", "LastChangeDateTime", "LastChangeDate"} & set(es.prop_map)
]


def _ms(moment: dt.datetime) -> int:
    return int(moment.timestamp() * 1000)


@pytest.mark.parametrize("es", STAMPED_SETS, ids=lambda es: es.name)
def test_a_record_created_a_day_later_compares_equal(es: EntitySet) -> None:
    """The reference run created it just before midnight (UTC), the killed run after."""
    before = dt.datetime(2026, 12, 7, 23, 59, 50, tzinfo=dt.UTC)
    after = before + dt.timedelta(seconds=20)
    docs = []
    for moment in (before, after):
        doc = {"Customer": "1000014", "YY1_HubId": "0f3c9a"}
        apply_stamp(es, doc, _ms(moment), created=True)
        del doc[STAMP]  # the emulator's own bookkeeping, never served
        docs.append(doc)
    assert docs[0] != docs[1]  # the stamps do differ
    names = {"0f3c9a": "new customer Fjord Freight AS"}
    assert normalise(docs[0], names) == normalise(docs[1], names)
