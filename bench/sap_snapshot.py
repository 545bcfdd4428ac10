"""CPU of one snapshot compare of SAP reservations (the read every sync pass makes,
``SapConnector._changes_by_hash``), against a seeded SAP emulator in this process.

    python -m bench.sap_snapshot [--customers 2000] [--repeat 5] [--data-dir DIR]

Each round reads every reservation with the allocation mapping's ``$select`` and the
items expanded, and compares the hashes with the cursor the first read left (an
unchanged book: nothing is handed on). "cold" follows a write to a reservation item
through the API, so the emulator renders every page again; "warm" repeats the read with
nothing written in between (pages the emulator kept). It prints the medians of the
process CPU (emulator and connector), the calling thread's CPU (the connector) and wall.
``--data-dir`` keeps the seeded sandbox for the next run (seeding takes a while).
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench._common import Timing, commit_and_load, measured, positive_int, print_table

ENTITY = "allocation"
SERVICE = "API_RESERVATION_DOCUMENT_SRV"


@contextmanager
def _data_dir(path: str | None) -> Iterator[Path]:
    if path:
        yield Path(path)
        return
    with tempfile.TemporaryDirectory(prefix="bench-sap-snapshot-") as tmp:
        yield Path(tmp)


def _touch(connector: Any, n: int) -> None:
    """Change one reservation item through the API (a write the page cache must see)."""
    session = connector.session
    connector._fetch_csrf(SERVICE)
    root = connector._service_url(SERVICE)
    first = session.get(
        f"{root}A_ReservationDocumentItem?$top=1&$select=Reservation,ReservationItem,RecordType"
        "&$format=json"
    )
    first.raise_for_status()
    item = first.json()["d"]["results"][0]
    answer = session.patch(
        item["__metadata"]["uri"],
        json={"ReservationItemText": f"bench {n}"},
        headers={"If-Match": "*"},
    )
    assert answer.status_code == 204, answer.text


def _read(connector: Any, cursor: str | None) -> tuple[int, str | None]:
    handed, last = 0, cursor
    for batch in connector.read_changes(ENTITY, cursor):
        handed += len(batch.records)
        if batch.cursor is not None:
            last = batch.cursor
    return handed, last


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--customers", type=positive_int, default=2000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--repeat", type=positive_int, default=5)
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args(argv)
    logging.disable(logging.WARNING)

    from hub.systems import connect
    from sandbox.runner import running_sandbox

    with (
        _data_dir(args.data_dir) as tmp,
        running_sandbox(
            tmp / "sb", seed=args.seed, customers=args.customers, systems=("sap",)
        ) as sb,
    ):
        connector = connect("sap", sb.env)
        try:
            handed, cursor = _read(connector, None)
            print(f"{handed:,} reservations read")
            rows: dict[str, list[Timing]] = {"cold": [], "warm": []}
            for n in range(args.repeat):
                _touch(connector, n)
                timing, (changed, _) = measured(lambda: _read(connector, cursor))
                rows["cold"].append(timing)
                timing, (unchanged, _) = measured(lambda: _read(connector, cursor))
                rows["warm"].append(timing)
                assert unchanged == changed, (unchanged, changed)
        finally:
            connector.close()

    print_table(
        ["read", "runs", "CPU s (process)", "CPU s (thread)", "wall s"],
        [
            [
                name,
                len(ts),
                f"{statistics.median(t.cpu for t in ts):.3f}",
                f"{statistics.median(t.cpu_thread for t in ts):.3f}",
                f"{statistics.median(t.wall for t in ts):.3f}",
            ]
            for name, ts in rows.items()
        ],
    )
    print(commit_and_load())


if __name__ == "__main__":
    main()
