"""A backfill in partitions (hub/sync/backfill.py) on PostgreSQL, through the sandbox:
two partitions at once leave the golden records and xrefs one run leaves, a batch
retried after a conflict applies once, and the cursors it sets skip no change made while
it ran."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import OperationalError

from bench.backfill import capture, differences
from connectors import registry
from hub.store import create_store_engine
from hub.store.migrate import upgrade
from hub.sync import backfill
from hub.sync.engine import HUB, SyncEngine
from hub.sync.lock import store_lock
from hub.systems import connect
from sandbox.postgres import fresh_database
from sandbox.runner import SandboxHandle, running_sandbox

pytestmark = pytest.mark.postgres

SEED, CUSTOMERS = 5, 12
ENTITIES = ("product", "customer", "subscription")


def _database(server_url: str, name: str) -> str:
    url = fresh_database(server_url, name)
    upgrade(url)
    return url


def _engines(env: dict[str, str], url: str) -> Callable[[], SyncEngine]:
    made: list[SyncEngine] = []

    def make() -> SyncEngine:
        connectors = {s: connect(s, env) for s in registry.configured_systems(env)}
        engine = SyncEngine(create_store_engine(url), connectors)
        made.append(engine)
        return engine

    return make


def _store_only(state: dict[str, Any], entities: tuple[str, ...]) -> dict[str, Any]:
    return {
        part: {k: v for k, v in rows.items() if k.split("/", 1)[0] in entities}
        for part, rows in state.items()
        if part in ("golden", "xref")
    }


@pytest.fixture(scope="module")
def reference(postgres_server: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """What one ordinary run leaves (store and systems), on PostgreSQL."""
    url = _database(postgres_server, "backfill_reference")
    folder = tmp_path_factory.mktemp("backfill-reference")
    with running_sandbox(folder / "sb", seed=SEED, customers=CUSTOMERS) as sb:
        _engines(dict(sb.env), url)().run(list(ENTITIES))
        return capture(sb.env, url)


@pytest.fixture
def landscape(tmp_path: Path) -> Iterator[SandboxHandle]:
    with running_sandbox(tmp_path / "sb", seed=SEED, customers=CUSTOMERS) as sb:
        yield sb


def test_two_concurrent_partitions_leave_what_one_run_leaves(
    reference: dict[str, Any], landscape: SandboxHandle, postgres_server: str
) -> None:
    url = _database(postgres_server, "backfill_two")
    results = backfill.run_backfill(_engines(dict(landscape.env), url), ENTITIES, 2)
    assert {r.index for r in results} == {0, 1}
    assert all(r.read > 0 for r in results if r.entity == "customer" and r.phase == "creators")
    n, shown = differences(reference, capture(landscape.env, url))
    assert n == 0, shown
    engine = create_store_engine(url)
    with engine.connect() as conn:  # the backfills are over: nothing of theirs is left
        slots = conn.execute(sa.text("select entity from cursors where system = 'hub'")).scalars()
        assert not [s for s in slots if s.startswith("backfill:")]
        assert conn.execute(sa.text("select count(*) from locks")).scalar_one() == 0
    engine.dispose()


def test_a_batch_retried_after_a_conflict_applies_once(
    reference: dict[str, Any], landscape: SandboxHandle, postgres_server: str
) -> None:
    url = _database(postgres_server, "backfill_retry")
    engine = _engines(dict(landscape.env), url)()
    real = engine._ingest
    failed: list[str] = []

    class Deadlock(Exception):
        pgcode = "40P01"

    def ingest_then_conflict(s: Any, system: str, entity: str, records: list[Any]) -> None:
        real(s, system, entity, records)  # written in the transaction, then rolled back
        if entity == "customer" and not failed:
            failed.append(system)
            raise OperationalError("UPDATE golden_records ...", {}, Deadlock("deadlock detected"))

    engine._ingest = ingest_then_conflict  # type: ignore[method-assign]
    retried = 0
    for entity in ("product", "customer"):
        state = backfill.begin(engine, entity, 1)
        retried += backfill.run_partition(engine, state, 0, "creators").retries
        backfill.settle(engine, state)
        retried += backfill.run_partition(engine, state, 0, "others").retries
        backfill.finish(engine, state)
    assert failed and retried == 1
    got = _store_only(capture(landscape.env, url), ("product", "customer"))
    n, shown = differences(_store_only(reference, ("product", "customer")), got)
    assert n == 0, shown
    customers = len([k for k in got["golden"] if k.startswith("customer/")])
    assert engine.counts[HUB]["customer"].created == customers  # counted once, not twice


def test_a_backfill_refuses_to_run_beside_a_sync_of_the_entity(
    landscape: SandboxHandle, postgres_server: str
) -> None:
    url = _database(postgres_server, "backfill_refused")
    engine = _engines(dict(landscape.env), url)()
    state = backfill.begin(engine, "product", 2, probe=False)
    refused = pytest.raises(backfill.BackfillRefused, match="a sync of product is running")
    with store_lock(engine.engine, "sync:product"), refused:
        backfill.run_partition(engine, state, 0, "creators")


def test_the_cursors_after_a_backfill_skip_no_change_made_during_it(
    landscape: SandboxHandle, postgres_server: str
) -> None:
    url = _database(postgres_server, "backfill_cursors")
    # no overlap re-read: the cursor's own position must not skip the change
    env = {**landscape.env, "SALESFORCE_CURSOR_OVERLAP_SECONDS": "0"}
    engine = _engines(env, url)()
    backfill.run_backfill(lambda: engine, ["product"], 1)
    state = backfill.begin(engine, "customer", 2)
    for i in range(2):
        backfill.run_partition(engine, state, i, "creators")
    backfill.settle(engine, state)
    # an account renamed in Salesforce after the creators were read, before the end
    sf: Any = connect("salesforce", env)
    row = sf._client().query("SELECT Id, Name, Hub_Id__c FROM Account ORDER BY Id LIMIT 1")
    account = row["records"][0]
    sf._client().Account.update(account["Id"], {"Name": "Renamed During Backfill GmbH"})
    sf.close()
    for i in range(2):
        backfill.run_partition(engine, state, i, "others")
    backfill.finish(engine, state)
    with engine.sessions() as s:
        from hub.store import repo

        stored = repo.get_cursor(s, "salesforce", "customer")
        golden = repo.golden_for(s, "customer", [account["Hub_Id__c"]])[account["Hub_Id__c"]]
    at = backfill.cursor_stamp("salesforce", stored)
    assert at is not None and at >= state.started  # set at the start, moved on by the pass
    assert golden.data["legal_name"] == "Renamed During Backfill GmbH"
    # and a cursor is never moved back
    assert backfill.set_cursors(engine, state) == {}


def test_the_dagster_backfill_assets_load_the_entity(
    landscape: SandboxHandle, postgres_server: str
) -> None:
    from dagster import DagsterInstance, Definitions, materialize

    from app.defs.backfill import build_backfill_assets, finish_key, partition_keys, phase_key
    from app.defs.resources import HubStoreResource
    from hub.mapping.spec import MAPPINGS_DIR, load_all

    url = _database(postgres_server, "backfill_dagster")
    specs = [s for s in load_all(MAPPINGS_DIR)[0] if s.entity == "product"]
    assets = build_backfill_assets(specs, partitions=2)

    class Holder:
        def __init__(self, system: str) -> None:
            self.system = system

        def connector(self) -> Any:
            return connect(self.system, dict(landscape.env))

    resources: dict[str, Any] = {"hub_store": HubStoreResource(database_url=url)}
    resources.update({s.system: Holder(s.system) for s in specs})
    Definitions.validate_loadable(Definitions(assets=assets, resources=resources))
    with DagsterInstance.ephemeral() as instance:
        for phase in ("creators", "settle", "others"):
            for key in partition_keys(2) if phase != "settle" else [None]:
                done = materialize(
                    assets, selection=[phase_key("product", phase)], partition_key=key,
                    resources=resources, instance=instance,
                )  # fmt: skip
                assert done.success
        last = materialize(
            assets, selection=[finish_key("product")], resources=resources, instance=instance
        )
        assert last.success
    engine = create_store_engine(url)
    with engine.connect() as conn:
        goldens = conn.execute(
            sa.text("select count(*) from golden_records where entity = 'product'")
        ).scalar_one()
        cursors = {r[0]: r[1] for r in conn.execute(sa.text("select system, value from cursors"))}
    engine.dispose()
    assert goldens == 18
    assert {"billing", "pim", "salesforce"} <= set(cursors)
