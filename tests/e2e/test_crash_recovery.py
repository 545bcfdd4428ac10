"""Crash recovery: the sync runs in its own process and is SIGKILLed at many points of its
work (after 1, 2, 3... committed batches: between extract, merge, push and bookkeeping),
each time rerun, during the initial load and again during an incremental pass after users
changed things in Salesforce, the WMS and billing. The end state - golden records, every
system's records, quarantine - equals that of an uninterrupted run on an identical
landscape: nothing lost, nothing created twice, nothing half-written."""

import json
import os
import random
import signal
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from connectors import registry
from connectors.billing_schema import subscriptions
from hub.mapping.spec import MAPPINGS_DIR, load_all
from hub.model import ENTITY_ORDER, validate_record
from hub.store import create_store_engine
from hub.store.migrate import upgrade
from hub.store.models import (
    Finding,
    FindingObservation,
    GoldenRecord,
    OutboxEntry,
    QuarantineEntry,
    ReconciliationRun,
)
from hub.systems import connect
from sandbox.run_state import SEEDED_SF_ID, minted_names, normalise
from sandbox.runner import SandboxHandle, running_sandbox
from tests import forked
from tests.computed_once import computed_once
from tests.forked import Forked

ROOT = Path(__file__).resolve().parents[2]
SEED, CUSTOMERS = 5, 12
#: kill points per reconciliation test (each a whole child process: the suite's budget)
KILLED_RECONCILIATIONS = 4


def _child(env_file: Path, store: str, module: str = "sync_child") -> Forked:
    """A sync (or with ``module``, a reconciliation) in its own process, printing ticks:
    forked from a process that imported the project once (tests.forked), not started
    with ``python -m`` (whose imports cost more CPU than the work)."""
    return forked.start(
        f"tests.e2e.{module}:main",
        ["--env-file", str(env_file), "--store", store],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        cwd=ROOT,
    )


def _sync_to_end(env_file: Path, store: str) -> int:
    """One uninterrupted run; returns how many batches it committed."""
    child = _child(env_file, store)
    assert child.stdout is not None
    ticks = sum(1 for line in child.stdout if line.startswith("tick"))
    assert child.wait(timeout=300) == 0
    return ticks


def _sync_with_kills(env_file: Path, store: str, kill_after: list[int]) -> list[int]:
    """Kill a run after each given number of committed batches, then let one finish.
    Returns the tick at which each kill landed (a run that finished first is not killed)."""
    landed = []
    for n in kill_after:
        child = _child(env_file, store)
        assert child.stdout is not None
        seen = 0
        for line in child.stdout:
            if line.startswith("tick"):
                seen += 1
                if seen >= n:
                    os.kill(child.pid, signal.SIGKILL)
                    landed.append(seen)
                    break
        child.wait(timeout=300)
    _sync_to_end(env_file, store)
    return landed


def _user_changes(sb: SandboxHandle) -> None:
    """What users do between syncs, identically in both landscapes."""
    sf = connect("salesforce", sb.env)._client()  # type: ignore[attr-defined]
    accounts = sf.query("SELECT Id, Name FROM Account ORDER BY Hub_Id__c LIMIT 3")["records"]
    for account in accounts:
        sf.Account.update(account["Id"], {"Name": account["Name"] + " Holding"})
    sf.Account.create(
        {
            "Name": "Fjord Freight AS",
            "BillingStreet": "1 Kaigata",
            "BillingCity": "Oslo",
            "BillingPostalCode": "0150",
            "BillingCountry": "NO",
            "CurrencyIsoCode": "EUR",
        }
    )
    headers = {"Authorization": f"Bearer {sb.env['WMS_API_KEY']}"}
    with httpx.Client(base_url=sb.env["WMS_URL"], headers=headers) as wms:
        listed = wms.get("/v1/allocations", params={"status": "reserved", "limit": 2}).json()
        for allocation in listed["data"]:
            response = wms.patch(f"/v1/allocations/{allocation['id']}", json={"status": "picked"})
            assert response.status_code == 200, response.text
    billing = sa.create_engine(sb.billing_url)
    with billing.begin() as conn:
        first = conn.execute(
            sa.select(subscriptions.c.id)
            .where(subscriptions.c.status == "active")
            .order_by(subscriptions.c.hub_id)
            .limit(2)
        ).scalars()
        conn.execute(
            sa.update(subscriptions)
            .where(subscriptions.c.id.in_(list(first)))
            .values(status="paused", updated_at=datetime.now(UTC))
        )
    billing.dispose()


def _state(sb: SandboxHandle, store: str) -> dict[str, Any]:
    """Everything a run leaves behind, with ids minted at run time (hub ids of records a
    system created, their ids in other systems) replaced by a stable name."""
    engine = create_store_engine(store)
    with engine.connect() as conn:
        goldens = conn.execute(
            sa.select(GoldenRecord.entity, GoldenRecord.hub_id, GoldenRecord.data)
        ).all()
        quarantine = conn.execute(
            sa.select(
                QuarantineEntry.system,
                QuarantineEntry.entity,
                QuarantineEntry.external_key,
                QuarantineEntry.status,
            )
        ).all()
        pending = conn.execute(
            sa.select(sa.func.count())
            .select_from(OutboxEntry)
            .where(OutboxEntry.status == "pending")
        ).scalar_one()
    engine.dispose()
    names = minted_names(goldens, "new {}")
    for entity, _, data in goldens:  # a half-written golden record would not validate
        validate_record(entity, data)
    # ids Salesforce mints at run time follow its own counter (which also counts records
    # a test user created): named after the record's hub id. Duplicates still show, as
    # extra records in the counts below.
    sf = connect("salesforce", sb.env)
    for entity in sf.entities():
        for batch in sf.read_snapshot(entity):
            for r in batch.records:
                if not SEEDED_SF_ID.match(str(r.get("Id"))):
                    names[str(r["Id"])] = (
                        f"sf id of {names.get(str(r.get('Hub_Id__c')), r.get('Hub_Id__c'))}"
                    )
    sf.close()
    systems: dict[str, Any] = {}
    mapped = {spec.system for spec in load_all(MAPPINGS_DIR)[0]}
    for system in registry.configured_systems(sb.env):
        if system not in mapped:
            continue
        connector = connect(system, sb.env)
        for entity in connector.entities():
            rows = [
                json.dumps(normalise(r, names), sort_keys=True, default=str)
                for batch in connector.read_snapshot(entity)
                for r in batch.records
            ]
            systems[f"{system}/{entity}"] = Counter(rows)
        connector.close()
    golden_rows = Counter(
        json.dumps(normalise({"entity": e, **d}, names), sort_keys=True, default=str)
        for e, _, d in goldens
    )
    return {
        "golden": golden_rows,
        "systems": systems,
        "quarantine": Counter((s, e, names.get(k, k), st) for s, e, k, st in quarantine),
        "pending": pending,
    }


def _diff(a: Counter, b: Counter) -> dict[str, list[str]]:
    return {
        "only_reference": list((a - b).elements())[:3],
        "only_crashed": list((b - a).elements())[:3],
    }


def _uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The state an uninterrupted initial load, user changes and incremental pass leave
    (on SQLite; the same for both store backends, so computed once per test run)."""
    folder = tmp_path_factory.mktemp("uninterrupted")
    reference_store = f"sqlite:///{folder / 'reference.sqlite'}"
    upgrade(reference_store)
    with running_sandbox(folder / "sb", seed=SEED, customers=CUSTOMERS) as sb:
        env_file = folder / "sb" / "sandbox.env"
        initial_ticks = _sync_to_end(env_file, reference_store)
        _user_changes(sb)
        incremental_ticks = _sync_to_end(env_file, reference_store)
        _sync_to_end(env_file, reference_store)  # reads the echoes of its own creates
        state = _state(sb, reference_store)
    assert state["pending"] == 0
    assert initial_ticks > 10 and incremental_ticks > 3
    return {"state": state, "incremental_ticks": incremental_ticks}


@pytest.mark.slow
def test_sigkilled_syncs_converge_to_the_uninterrupted_result(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, store_url: str
) -> None:
    rng = random.Random(20251125)
    upgrade(store_url)
    reference = computed_once(
        tmp_path_factory, "crash-sync-reference", lambda: _uninterrupted(tmp_path_factory)
    )
    expected, incremental_ticks = reference["state"], reference["incremental_ticks"]

    with running_sandbox(tmp_path / "crashed", seed=SEED, customers=CUSTOMERS) as sb:
        env_file = tmp_path / "crashed" / "sandbox.env"
        # each rerun has less left to do: kill points early enough to land in every run
        kills = [rng.randint(1, 12) for _ in range(4)]
        landed = _sync_with_kills(env_file, store_url, kills)
        _user_changes(sb)
        kills_2 = [rng.randint(1, max(1, incremental_ticks // 2)) for _ in range(2)]
        landed += _sync_with_kills(env_file, store_url, kills_2)
        _sync_to_end(env_file, store_url)
        actual = _state(sb, store_url)
    assert len(landed) >= 5, f"kills landed at ticks {landed}"
    assert actual["pending"] == 0
    assert actual["golden"] == expected["golden"], _diff(expected["golden"], actual["golden"])
    assert actual["systems"].keys() == expected["systems"].keys()
    for name in expected["systems"]:
        assert actual["systems"][name] == expected["systems"][name], (
            name,
            _diff(expected["systems"][name], actual["systems"][name]),
        )
    assert actual["quarantine"] == expected["quarantine"]
    assert set(ENTITY_ORDER) <= {json.loads(k)["entity"] for k in expected["golden"]}


def _reconcile_to_end(env_file: Path, store: str) -> int:
    child = _child(env_file, store, "recon_child")
    assert child.stdout is not None
    ticks = sum(1 for line in child.stdout if line.startswith("tick"))
    assert child.wait(timeout=300) == 0
    return ticks


def _findings_state(store: str) -> dict[str, Any]:
    """The findings as an engineer sees them (last_seen aside, which every run moves), and
    the bookkeeping a half-written run would leave: a run row never finished, observations
    of no run, findings seen by no run."""
    engine = create_store_engine(store)
    with engine.connect() as conn:
        findings = sorted(
            (
                f.id,
                f.kind,
                f.field or "",
                json.dumps(f.expected, sort_keys=True),
                json.dumps(f.actual, sort_keys=True),
                f.status,
                f.first_seen.isoformat(),
            )
            for f in conn.execute(sa.select(Finding)).all()
        )
        unfinished = conn.execute(
            sa.select(sa.func.count())
            .select_from(ReconciliationRun)
            .where(ReconciliationRun.finished_at.is_(None))
        ).scalar_one()
        runs = conn.execute(sa.select(sa.func.count()).select_from(ReconciliationRun)).scalar_one()
        unobserved = conn.execute(
            sa.select(sa.func.count())
            .select_from(Finding)
            .where(
                Finding.kind != "conflict",  # the sync records conflicts, outside any run
                ~sa.exists().where(FindingObservation.finding_id == Finding.id),
            )
        ).scalar_one()
    engine.dispose()
    return {
        "findings": findings,
        "unfinished_runs": unfinished,
        "runs": runs,
        "unobserved": unobserved,
    }


@pytest.mark.slow
def test_sigkilled_reconciliations_leave_the_findings_of_an_uninterrupted_run(
    tmp_path: Path, store_url: str
) -> None:
    """A reconciliation killed while staging, comparing or persisting leaves the findings
    exactly as the last completed run left them (one transaction per run), and the next
    complete run finds what an uninterrupted run finds."""
    rng = random.Random(20251126)
    upgrade(store_url)
    with running_sandbox(tmp_path / "sb", seed=SEED, customers=CUSTOMERS) as sb:
        env_file = tmp_path / "sb" / "sandbox.env"
        _sync_to_end(env_file, store_url)
        _user_changes(sb)  # drift the reconciliation must see: not synced yet
        stages = _reconcile_to_end(env_file, store_url)
        reference = _findings_state(store_url)
        assert reference["unfinished_runs"] == 0 and reference["unobserved"] == 0
        assert [f for f in reference["findings"] if f[5] == "open"], "drift must be found"
        landed = []
        for _ in range(KILLED_RECONCILIATIONS):
            child = _child(env_file, store_url, "recon_child")
            assert child.stdout is not None
            kill_at = rng.randint(1, stages)
            seen = 0
            for line in child.stdout:
                seen += line.startswith("tick")
                if seen >= kill_at:
                    # at the last stage, let it run on into the comparison and the write
                    if seen == stages - 1:
                        time.sleep(rng.uniform(0, 0.5))
                    os.kill(child.pid, signal.SIGKILL)
                    landed.append(seen)
                    break
            child.wait(timeout=300)
            after_kill = _findings_state(store_url)
            # nothing half-written: either the killed run committed whole, or not at all
            assert after_kill["unfinished_runs"] == 0 and after_kill["unobserved"] == 0
            assert after_kill["findings"] == reference["findings"]
        _reconcile_to_end(env_file, store_url)
        final = _findings_state(store_url)
    assert len(landed) == KILLED_RECONCILIATIONS, landed
    assert final["findings"] == reference["findings"]
    assert final["runs"] >= reference["runs"] + 1
