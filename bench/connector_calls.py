"""API calls the connectors spend per records written and read, beside the minimum the
APIs allow, counted by the sandbox emulators themselves (every request they answer).

    python -m bench.connector_calls [--records 10000] [--system salesforce|sap] [--detail]

Why: API calls are what a Salesforce org rations (a daily budget shared with every other
integration) and what an S/4 gateway throttles; a connector that makes a second call per
batch halves what the hub can sync in a day. Each row runs on a fresh connector, so the
calls a session needs once are in it and in its minimum alike (the OAuth token call and
the describe of the object, which tells the org's currency mode and address picklists,
for Salesforce; ``$metadata`` and the CSRF token fetch for SAP). Minimums:

* Salesforce sObject Collections upsert: ceil(n/200) (200 records a call, the API's cap);
* Bulk API 2.0 ingest: create + upload + close + one status poll + successful and failed
  results = 6 (a job the emulator finishes within the first poll wait; the unprocessed
  list is only asked for when rows are missing);
* Bulk API 2.0 query: create + one poll + ceil(n/50,000) result pages;
* REST query (deltas): ceil(n/2,000), the first page and the ``nextRecordsUrl`` pages;
* REST by keys: ceil(keys/500), one ``IN`` list per call;
* SAP OData reads: ceil(n/1,000) server pages; writes: ceil(n/batch_size) ``$batch``, for
  customers (business partners) and allocations (stock reservations with their item).

The table prints the ratio calls/minimum; the exit status is 1 when any exceeds 1.1, and
``--detail`` (or a ratio over 1.1) prints which calls the rows spent.
"""

from __future__ import annotations

import argparse
import math
import re
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench._common import positive_int, print_table
from hub.systems import connect
from sandbox.runner import SandboxHandle, running_sandbox

LIMIT = 1.1
#: Record and job ids, query locators, OData keys: folded so calls group by kind.
_ID = re.compile(r"/(?:(?=[^/]*\d)[0-9A-Za-z]{15,18}(?:-\d+)?|'[^/]*'|\([^/]*\))(?=/|$)")


@dataclass
class Row:
    system: str
    operation: str
    records: int
    calls: int
    minimum: int
    formula: str
    spent: Counter[str] = field(default_factory=Counter)

    @property
    def ratio(self) -> float:
        return self.calls / self.minimum


def _measure(sb: SandboxHandle, system: str, fn: Callable[[], Any]) -> tuple[int, Counter[str]]:
    """Calls the emulator answered while ``fn`` ran, and of which kind (ids folded)."""
    sb.reset_calls()
    fn()
    by_call: dict[str, int] = sb.calls()[system]["by_call"]
    kinds: Counter[str] = Counter()
    for call, n in by_call.items():
        kinds[_ID.sub("/{id}", call)] += n
    return sum(by_call.values()), kinds


def _accounts(n: int, prefix: str) -> list[dict[str, Any]]:
    return [
        {
            "Hub_Id__c": f"{prefix}-{i:07d}",
            "Name": f"Bench Customer {i}",
            "BillingCity": "Oslo",
            "BillingCountry": "NO",
            "CurrencyIsoCode": "EUR",
        }
        for i in range(n)
    ]


def _fresh(sb: SandboxHandle, system: str, **settings: Any) -> Any:
    connector = connect(system, sb.env)
    for name, value in settings.items():
        setattr(connector.settings, name, value)  # type: ignore[attr-defined]
    return connector


def salesforce_rows(sb: SandboxHandle, n: int) -> list[Row]:
    rows: list[Row] = []
    _, cursor = _drain(_fresh(sb, "salesforce"), None)  # where the deltas start

    sf = _fresh(sb, "salesforce", bulk_threshold=10**9)
    calls, kinds = _measure(
        sb, "salesforce", lambda: sf.write_batch("customer", _accounts(n, "CUS-COLL"))
    )
    need = 2 + math.ceil(n / 200)
    rows.append(Row("salesforce", "write, sObject Collections", n, calls, need, "2+n/200", kinds))

    sf = _fresh(sb, "salesforce", bulk_threshold=0)
    calls, kinds = _measure(
        sb, "salesforce", lambda: sf.write_batch("customer", _accounts(n, "CUS-BULK"))
    )
    rows.append(Row("salesforce", "write, Bulk API 2.0 ingest", n, calls, 2 + 6, "2+6", kinds))

    sf = _fresh(sb, "salesforce")
    got: list[int] = []
    calls, kinds = _measure(sb, "salesforce", lambda: got.append(_drain(sf, None)[0]))
    need = 2 + 2 + math.ceil(got[0] / 50_000)
    rows.append(
        Row("salesforce", "read, Bulk API 2.0 query", got[0], calls, need, "2+2+n/50k", kinds)
    )

    sf = _fresh(sb, "salesforce")
    got.clear()
    calls, kinds = _measure(sb, "salesforce", lambda: got.append(_drain(sf, cursor)[0]))
    need = 2 + math.ceil(got[0] / 2000)
    rows.append(Row("salesforce", "read, REST deltas", got[0], calls, need, "2+n/2000", kinds))

    sf = _fresh(sb, "salesforce")
    keys = [a["Hub_Id__c"] for a in _accounts(n, "CUS-COLL")]
    calls, kinds = _measure(
        sb, "salesforce", lambda: sum(len(b.records) for b in sf.read_by_keys("customer", keys))
    )
    need = 2 + math.ceil(n / sf.settings.keys_per_query)
    rows.append(Row("salesforce", "read by keys, REST", n, calls, need, "2+n/500", kinds))
    return rows


def _drain(connector: Any, cursor: str | None, entity: str = "customer") -> tuple[int, str | None]:
    total = 0
    for batch in connector.read_changes(entity, cursor):
        total += len(batch.records)
        cursor = batch.cursor or cursor
    return total, cursor


def sap_rows(sb: SandboxHandle, n: int) -> list[Row]:
    """Customers (business partners) and allocations (stock reservations, deep-inserted
    with their item): written, then read back through server paging."""
    records: dict[str, list[dict[str, Any]]] = {
        "customer": [
            {
                "YY1_HubId": f"CUS-SAPB-{i:07d}",
                "CustomerFullName": f"Bench Kunde {i}",
                "Currency": "EUR",
                "CustomerPaymentTerms": "NT30",
            }
            for i in range(n)
        ],
        "allocation": [
            {
                "YY1_HubId": f"ALC-SAPB-{i:07d}",
                "Product": "HW-GATEWAY",
                "Plant": "DE01",
                "ResvnItmRequiredQtyInBaseUnit": 1 + i % 5,
                "MatlCompRequirementDate": "2026-12-15",
                "FulfilmentStatus": "reserved",
            }
            for i in range(n)
        ],
    }
    return [row for entity, batch in records.items() for row in _sap_entity(sb, entity, batch)]


def _sap_entity(sb: SandboxHandle, entity: str, batch: list[dict[str, Any]]) -> list[Row]:
    sap = _fresh(sb, "sap")
    calls, kinds = _measure(sb, "sap", lambda: sap.write_batch(entity, batch))
    size = sap.settings.batch_size
    need = 2 + math.ceil(len(batch) / size)
    operation, formula = f"write {entity}, $batch of {size}", f"2+n/{size}"
    write = Row("sap", operation, len(batch), calls, need, formula, kinds)
    reader = _fresh(sb, "sap")
    got: list[tuple[int, str | None]] = []
    calls, kinds = _measure(sb, "sap", lambda: got.append(_drain(reader, None, entity)))
    read_count, cursor = got[0]
    need = 1 + math.ceil(read_count / 1000)
    read = Row("sap", f"read {entity}, server paging", read_count, calls, need, "1+n/1000", kinds)
    if entity != "allocation":
        return [write, read]
    # reservations have no change stamp: every read compares the whole book with the
    # content hashes in its cursor, so an unchanged book costs its pages and yields nothing
    again: list[int] = []
    calls, kinds = _measure(sb, "sap", lambda: again.append(_drain(reader, cursor, entity)[0]))
    assert again == [0], f"an unchanged book handed on {again[0]} reservations"
    need = math.ceil(read_count / 1000)
    unchanged = Row(
        "sap", "re-read allocation, unchanged (hashes)", read_count, calls, need, "n/1000", kinds
    )
    return [write, read, unchanged]


def _sap_available(env: dict[str, str]) -> bool:
    try:
        connect("sap", env).close()
    except (ImportError, AttributeError, ValueError):
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--records", type=positive_int, default=10_000)
    parser.add_argument("--system", choices=("salesforce", "sap"), action="append")
    parser.add_argument("--detail", action="store_true", help="calls spent, by kind")
    args = parser.parse_args(argv)
    systems = tuple(args.system or ("salesforce", "sap"))
    rows: list[Row] = []
    with (
        tempfile.TemporaryDirectory(prefix="bench-calls-") as tmp,
        running_sandbox(Path(tmp) / "sb", seed=1, customers=10, systems=systems) as sb,
    ):
        if "salesforce" in systems:
            rows += salesforce_rows(sb, args.records)
        if "sap" in systems:
            if _sap_available(sb.env):
                rows += sap_rows(sb, args.records)
            else:
                print("sap: connectors/sap.py does not build; no SAP rows")
    table = [
        [
            r.system,
            r.operation,
            r.records,
            r.calls,
            f"{r.minimum} ({r.formula})",
            f"{r.calls * 10_000 / max(r.records, 1):,.1f}",
            f"{r.ratio:.2f}x",
        ]
        for r in rows
    ]
    print_table(
        ["system", "operation", "records", "calls", "minimum", "calls/10k", "vs minimum"], table
    )
    worst = max(rows, key=lambda r: r.ratio)
    print(f"worst ratio {worst.ratio:.2f}x ({worst.system}: {worst.operation}; limit {LIMIT}x)")
    for r in rows:
        if args.detail or r.ratio > LIMIT:
            spent = ", ".join(f"{n} x {kind}" for kind, n in r.spent.most_common())
            print(f"  {r.system} {r.operation}: {spent}")
    return 0 if worst.ratio <= LIMIT else 1


if __name__ == "__main__":
    raise SystemExit(main())
