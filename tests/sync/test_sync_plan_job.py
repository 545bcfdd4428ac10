"""The ``sync_plan`` job: the dry run of a sync from the Launchpad. It shows what a sync
would send (the SAP update with the field's before -> after) and changes nothing: the
in-memory systems and every table of the store are as they were."""

import copy
import json

import sqlalchemy as sa
from dagster import DagsterInstance

from app.defs.sync_plan import sync_plan_job
from hub.store.models import Base
from tests.sync.test_resync_job import synced  # noqa: F401  (the fixture)


def _store(engine: sa.Engine) -> dict[str, list[str]]:
    with engine.connect() as conn:
        return {
            t.name: sorted(
                json.dumps(dict(r._mapping), default=str) for r in conn.execute(sa.select(t))
            )
            for t in Base.metadata.sorted_tables
        }


def test_the_plan_shows_the_change_and_nothing_is_written(synced, setup) -> None:  # noqa: F811
    resources, erp, _, _ = synced
    _, crm, _, engine = setup
    crm.put({"Id": next(iter(crm.rows)), "Name": "Acme Renamed GmbH"})
    before = (_store(engine), copy.deepcopy(erp.rows), copy.deepcopy(crm.rows))
    config = {"ops": {"plan_sync": {"config": {"entities": ["customer"]}}}}
    with DagsterInstance.ephemeral() as instance:
        result = sync_plan_job.execute_in_process(
            run_config=config, resources=resources, instance=instance, raise_on_error=False
        )
    assert result.success
    output = result.output_for_node("plan_sync")
    assert output["planned"] == {"sap": {"customer": {"update": 1}}}
    (push,) = output["pushes"]
    assert push["changes"]["legal_name"] == {"before": "Acme GmbH", "after": "Acme Renamed GmbH"}
    assert (_store(engine), erp.rows, crm.rows) == before
