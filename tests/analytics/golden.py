"""Writing canonical records into a migrated hub store as golden records, the way the sync
engine leaves them: validated, dumped as JSON, fingerprinted."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from hub.fingerprint import fingerprint
from hub.model import validate_record
from hub.store.models import GoldenRecord

STAMP = datetime(2025, 1, 1, tzinfo=UTC)


def write_golden(engine: Engine, entity: str, records: Iterable[dict[str, Any]]) -> int:
    """Insert (or replace) ``records`` of ``entity``; returns how many."""
    n = 0
    with Session(engine) as session, session.begin():
        for record in records:
            data = validate_record(entity, record).model_dump(mode="json")
            session.merge(
                GoldenRecord(
                    entity=entity,
                    hub_id=data["hub_id"],
                    data=data,
                    field_meta={},
                    fingerprint=fingerprint(data),
                )
            )
            n += 1
    return n
