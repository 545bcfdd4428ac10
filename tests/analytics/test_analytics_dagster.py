"""The analytics multi-asset materialises on a real store through Dagster: five assets,
the identity check passes (ERROR severity), plots are attached and written, the
definitions load on their own and merged with the hub's."""

from __future__ import annotations

from pathlib import Path

from dagster import AssetCheckSeverity, Definitions, materialize
from sqlalchemy import Engine

from app.defs.analytics import (
    ANALYTICS_JOB,
    ANALYTICS_KEYS,
    COHORTS_KEY,
    IDENTITY_CHECK,
    MOVEMENTS_KEY,
    MRR_KEY,
    analytics_definitions,
    subscription_analytics,
)
from app.defs.resources import HubStoreResource
from tests.analytics.golden import write_golden
from tests.analytics.scenarios import AS_OF, hand_book


def test_materialize_passes_the_identity_check_and_attaches_plots(
    store: tuple[str, Engine],
) -> None:
    url, engine = store
    for entity, records in hand_book().items():
        write_golden(engine, entity, records)
    result = materialize(
        [subscription_analytics],
        partition_key=AS_OF.isoformat(),
        resources={"hub_store": HubStoreResource(database_url=url)},
        run_config={"ops": {"subscription_analytics": {"config": {"months": 6}}}},
    )
    assert result.success
    mats = {m.asset_key: m for m in result.get_asset_materialization_events()}
    assert set(mats) == set(ANALYTICS_KEYS)
    mrr_meta = mats[MRR_KEY].materialization.metadata
    assert mrr_meta["mrr_minor"].value == 87247
    assert mrr_meta["paying_customers"].value == 8
    for key, name in ((MOVEMENTS_KEY, "waterfall"), (COHORTS_KEY, "heatmap")):
        md = mats[key].step_materialization_data.materialization.metadata[name].value
        assert isinstance(md, str) and md.startswith("![") and "data:image/png;base64," in md
        png = Path(str(mats[key].materialization.metadata[f"{name}_png"].value))
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    (check,) = result.get_asset_check_evaluations()
    assert check.check_name == IDENTITY_CHECK and check.asset_key == MOVEMENTS_KEY
    assert check.passed and check.severity == AssetCheckSeverity.ERROR
    assert check.metadata["months_checked"].value == 6
    out = Path(str(mrr_meta["output_dir"].value))
    assert (out / "metrics.json").exists() and (out / "customer_mrr.parquet").exists()


def test_definitions_load_alone_and_merged_with_the_hub() -> None:
    defs = analytics_definitions()
    Definitions.validate_loadable(defs)
    from app.definitions import defs as hub_defs

    merged = Definitions.merge(hub_defs, analytics_definitions(with_resources=False))
    Definitions.validate_loadable(merged)
    job = merged.resolve_job_def(ANALYTICS_JOB)
    assert job.partitions_def is not None
    graph = merged.resolve_asset_graph()
    assert graph.get(MRR_KEY).parent_keys >= {
        k for k in graph.get_all_asset_keys() if k.path[-1] == "subscription_golden"
    }
