"""One registry per closed list: the entities are declared once, in their sync order, by
the canonical model (``hub.model.ENTITIES`` / ``ENTITY_ORDER``); the systems once, by
``connectors.registry.SYSTEMS``, and each system's environment variables once, on its
connector's settings fields. Every other list - tuples, Literal config choices, CLI
choices, mapping checks, Dagster resources - is derived from those.

The scan reads the source (AST) of the shipped and dev packages and fails on a tuple,
list, set or ``Literal[...]`` written out with three or more entity names, or three or
more system names, outside the registries. Dicts keyed by entity or system (a connector's
table per entity, an emulator's settings per system) carry per-item data, not the list,
and are not flagged."""

from __future__ import annotations

import ast
import typing
from pathlib import Path

import pytest

from connectors import registry
from hub.model import ENTITIES, ENTITY_ORDER

ROOT = Path(__file__).resolve().parents[2]
SCANNED = ("app", "hub", "connectors", "schedules", "sandbox")
#: Where the closed lists are declared.
REGISTRIES = {"hub/model.py", "connectors/registry.py"}
THRESHOLD = 3

ENTITY_NAMES = frozenset({"product", "customer", "subscription", "allocation", "invoice"})
SYSTEM_NAMES = frozenset({"billing", "salesforce", "sap", "pim", "wms"})

#: The variable names ARCHITECTURE.md fixes (scripts and the sandbox rely on them).
ARCHITECTURE_VARIABLES = {
    "billing": {
        "BILLING_DATABASE_URL",
        "BILLING_CURSOR_OVERLAP_SECONDS",  # the hub's own tuning knob, in docs/operations.md
    },
    "salesforce": {
        "SALESFORCE_LOGIN_URL",
        "SALESFORCE_CLIENT_ID",
        "SALESFORCE_CLIENT_SECRET",
        "SALESFORCE_USERNAME",
        "SALESFORCE_PRIVATE_KEY_FILE",
        "SALESFORCE_API_VERSION",
        "HUB_CA_BUNDLE",
        "HUB_HTTP_TIMEOUT",
        "SALESFORCE_BULK_POLL_SECONDS",  # the hub's own tuning knob, documented in the README
        "SALESFORCE_CURSOR_OVERLAP_SECONDS",  # tuning knobs, in docs/operations.md
        "SALESFORCE_PUBSUB_URL",  # the change-event listener's endpoint, in docs/operations.md
        "SALESFORCE_PUBSUB_BATCH",  # the hub's own tuning knob, in docs/operations.md
    },
    "sap": {
        "SAP_ODATA_URL",
        "SAP_USER",
        "SAP_PASSWORD",
        "SAP_CLIENT",
        "HUB_CA_BUNDLE",
        "HUB_HTTP_TIMEOUT",
        "SAP_CURSOR_OVERLAP_SECONDS",
        "SAP_HUB_ID_FIELD",  # the customer's extension field name, in the README
    },
    "pim": {
        "PIM_URL",
        "PIM_CLIENT_ID",
        "PIM_SECRET",
        "PIM_USERNAME",
        "PIM_PASSWORD",
        "HUB_CA_BUNDLE",
        "HUB_HTTP_TIMEOUT",
        "PIM_CURSOR_OVERLAP_SECONDS",
    },
    "wms": {
        "WMS_URL",
        "WMS_API_KEY",
        "HUB_CA_BUNDLE",
        "HUB_HTTP_TIMEOUT",
        "WMS_CURSOR_OVERLAP_SECONDS",
    },
}
MARKERS = {
    "billing": "BILLING_DATABASE_URL",
    "salesforce": "SALESFORCE_LOGIN_URL",
    "sap": "SAP_ODATA_URL",
    "pim": "PIM_URL",
    "wms": "WMS_URL",
}


def closed_list_literals(source: str, filename: str = "<source>") -> list[str]:
    """``line: kind [names]`` of every sequence literal naming THRESHOLD+ entities or
    systems (a ``Literal[...]`` of several values is a tuple in the AST)."""
    found = []
    for node in ast.walk(ast.parse(source, filename=filename)):
        if not isinstance(node, ast.Tuple | ast.List | ast.Set):
            continue
        names = {
            e.value for e in node.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)
        }
        for kind, registered in (("entities", ENTITY_NAMES), ("systems", SYSTEM_NAMES)):
            listed = names & registered
            if len(listed) >= THRESHOLD:
                found.append(f"{node.lineno}: {kind} {sorted(listed)}")
    return found


def test_the_scan_finds_written_out_lists() -> None:
    source = (
        "from typing import Literal\n"
        'A = Literal["all", "product", "customer", "invoice"]\n'
        'B = ["billing", "sap", "wms"]\n'
        'C = {"subscription", "allocation", "invoice"}\n'
        'D = ("customer", "product")\n'
        'E = {"sap": 1, "pim": 2, "wms": 3}\n'
    )
    assert sorted(hit.split(":")[0] for hit in closed_list_literals(source)) == ["2", "3", "4"]


def test_no_closed_list_is_written_out_outside_its_registry() -> None:
    offenders = []
    for package in SCANNED:
        for path in sorted((ROOT / package).rglob("*.py")):
            relative = path.relative_to(ROOT).as_posix()
            if relative in REGISTRIES:
                continue
            offenders += [
                f"{relative}:{hit}" for hit in closed_list_literals(path.read_text(), relative)
            ]
    assert offenders == [], (
        "derive these from hub.model.ENTITY_ORDER / connectors.registry.NAMES instead"
    )


def test_the_registries_name_what_the_scan_looks_for() -> None:
    assert set(ENTITY_ORDER) == ENTITY_NAMES
    assert set(registry.NAMES) == SYSTEM_NAMES


def test_entity_order_is_the_models() -> None:
    from hub.recon import run
    from hub.sync import engine

    assert tuple(ENTITIES) == ENTITY_ORDER
    assert ENTITY_ORDER == ("product", "customer", "subscription", "allocation", "invoice")
    assert engine.ENTITY_ORDER is ENTITY_ORDER
    assert run.ENTITY_ORDER is ENTITY_ORDER


def test_systems_derive_from_the_registry() -> None:
    from hub.mapping import spec

    assert spec.SYSTEMS == registry.NAMES
    for system in registry.SYSTEMS:
        module = __import__(system.module, fromlist=["SYSTEM"])
        assert system.name == module.SYSTEM


@pytest.mark.parametrize("system", registry.NAMES)
def test_each_system_reads_the_architectures_variables(system: str) -> None:
    entry = registry.BY_NAME[system]
    assert set(entry.env_names().values()) == ARCHITECTURE_VARIABLES[system]
    assert entry.marker == MARKERS[system]


def test_the_roof_derives_its_choices_and_resources() -> None:
    from app.choices import ENTITY_CHOICES, SYSTEM_CHOICES
    from app.cli.main import app as cli
    from app.defs.quarantine import QuarantineRetryConfig
    from app.defs.recon import ReconcileConfig
    from app.defs.resources import SYSTEM_RESOURCES
    from app.defs.resync import ResyncConfig

    assert ("all", *ENTITY_ORDER) == ENTITY_CHOICES
    assert ("all", *registry.NAMES) == SYSTEM_CHOICES
    # every CLI --entity / --system lists exactly the registries' names
    import typer.main

    command = typer.main.get_command(cli)
    for name in ("sync", "reconcile", "findings", "resync"):
        for param in command.commands[name].params:  # type: ignore[attr-defined]
            if param.name in ("entity", "system"):
                listed = param.help.rsplit(": ", 1)[1].split(", ")
                expected = ENTITY_CHOICES if param.name == "entity" else SYSTEM_CHOICES
                assert set(listed) <= set(expected) and len(listed) >= len(expected) - 1

    def choices(config: type, field: str) -> tuple[str, ...]:
        return typing.get_args(config.model_fields[field].annotation)

    assert choices(ReconcileConfig, "entity") == ENTITY_CHOICES
    assert choices(ReconcileConfig, "system") == SYSTEM_CHOICES
    assert choices(QuarantineRetryConfig, "entity") == ENTITY_CHOICES
    assert choices(ResyncConfig, "entity") == ENTITY_ORDER

    assert tuple(SYSTEM_RESOURCES) == registry.NAMES
    for name, resource in SYSTEM_RESOURCES.items():
        settings = registry.BY_NAME[name].settings()
        public = {f: v for f, v in registry.BY_NAME[name].env_names().items()
                  if not settings[f].secret}  # fmt: skip
        assert resource.env_names == public
        assert set(resource.model_fields) == set(public)


def test_no_secret_is_a_resource_field() -> None:
    """The Launchpad's scaffold offered password and secret fields, inviting credentials
    into stored run config: secrets come from the environment only."""
    from app.defs.resources import SYSTEM_RESOURCES

    secrets = {
        field
        for system in registry.SYSTEMS
        for field, setting in system.settings().items()
        if setting.secret
    }
    assert {"password", "secret", "client_secret", "api_key"} <= secrets
    for resource in SYSTEM_RESOURCES.values():
        assert not set(resource.model_fields) & secrets, resource.__name__
