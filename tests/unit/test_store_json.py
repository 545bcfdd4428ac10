"""The hub store's JSON columns read back what was written, whichever encoder wrote it:
orjson for the common case, the standard library for what orjson refuses."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from hub.store.db import create_store_engine


@pytest.mark.parametrize(
    "value",
    [
        {"name": "Müller GmbH", "lines": [{"n": 1}], "none": None},
        {"big": 2**70, "small": -(2**63)},
        {3: "int keys become text"},
        7,
        "text",
    ],
)
def test_json_columns_round_trip(tmp_path: Path, value: Any) -> None:
    engine = create_store_engine(f"sqlite:///{tmp_path / 'j.sqlite'}")
    table = sa.Table("t", sa.MetaData(), sa.Column("v", sa.JSON))
    table.create(engine)
    with engine.begin() as conn:
        conn.execute(table.insert(), [{"v": value}])
        (back,) = conn.execute(sa.select(table.c.v)).scalars()
    expected = {str(k): v for k, v in value.items()} if isinstance(value, dict) else value
    assert back == expected


def test_nan_written_by_the_standard_library_still_reads(tmp_path: Path) -> None:
    engine = create_store_engine(f"sqlite:///{tmp_path / 'j.sqlite'}")
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (v JSON)")
        conn.exec_driver_sql("""INSERT INTO t VALUES ('{"x": NaN}')""")
        table = sa.Table("t", sa.MetaData(), sa.Column("v", sa.JSON))
        (back,) = conn.execute(sa.select(table.c.v)).scalars()
    assert math.isnan(back["x"])


def test_a_datetime_is_still_refused(tmp_path: Path) -> None:
    engine = create_store_engine(f"sqlite:///{tmp_path / 'j.sqlite'}")
    table = sa.Table("t", sa.MetaData(), sa.Column("v", sa.JSON))
    table.create(engine)
    with pytest.raises(sa.exc.StatementError, match="not JSON serializable"), engine.begin() as c:
        c.execute(table.insert(), [{"v": {"at": datetime.now(UTC)}}])
