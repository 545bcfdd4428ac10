"""`hub mappings check`: every error of every mapping file, then whether it passed.

Native field names are checked for the systems whose native records our code declares:
billing always (its schema, ``hub.mapping.native``); Salesforce, the PIM and the WMS from
the sandbox emulators' declarations when the sandbox is installed (a checkout; the
production wheel does not ship it). SAP's native record is the live service's
``$metadata`` plus what the connector flattens and derives (the sales area, the
reservation item, ``TaxNumber``, ``FulfilmentStatus``), which no module declares as data,
so its native names are not checked here."""

from __future__ import annotations

from pathlib import Path

import typer

from hub.mapping.spec import MAPPINGS_DIR, SYSTEMS, NativeFields, load_all

mappings_app = typer.Typer(help="Declarative field mappings.", no_args_is_help=True)

#: Why a system's native field names cannot be checked without it.
UNDECLARED = {
    "sap": "its records are the live $metadata plus what the connector flattens and derives",
}


def emulator_fields() -> dict[str, NativeFields]:
    """{system: {object: fields}} as the sandbox emulators declare them ({} without it)."""
    try:
        from sandbox.pim import products as pim
        from sandbox.pim.settings import PimSettings
        from sandbox.salesforce.schema import OBJECTS
        from sandbox.wms import model as wms
    except ModuleNotFoundError:
        return {}
    attributes = {f"values.{code}" for code in PimSettings().attributes}
    return {
        "salesforce": {o.name: frozenset(f.name for f in o.fields) for o in OBJECTS.values()},
        "pim": {"products": frozenset({*pim.WRITABLE, *pim.READ_ONLY, *attributes})},
        "wms": {"allocations": frozenset({*wms.WRITABLE, *wms.READ_ONLY})},
    }


def native_fields() -> dict[str, NativeFields]:
    from hub.mapping.native import declared

    return {**emulator_fields(), **declared()}


def _coverage(native: dict[str, NativeFields]) -> str:
    said = f"native field names checked for {', '.join(sorted(native))}"
    unchecked = [
        f"{s} ({UNDECLARED.get(s, 'the sandbox, which declares it, is not installed')})"
        for s in SYSTEMS
        if s not in native
    ]
    return f"{said}; not for {', '.join(unchecked)}" if unchecked else said


@mappings_app.command("check")
def mappings_check(
    root: Path = typer.Option(MAPPINGS_DIR, help="folder of <system>/<entity>.yaml files"),
) -> None:
    """Validate every mapping file and report all its errors at once.

    Each error names the file and line, the entity, the field, what is wrong and the
    closest valid name. Native field names are checked against what the system declares
    (billing's schema; Salesforce, PIM and WMS as the sandbox emulates them). Exits 1 if
    anything is wrong.
    """
    from hub.sync.deliveries import RULES_FILE, DeliveryRules

    if not root.is_dir():  # a mistyped --root passed as "0 mapping file(s) OK" before
        typer.echo(f"{root} is not a folder: no mapping file to check (--root)", err=True)
        raise typer.Exit(1)
    native = native_fields()
    specs, errors = load_all(root, native)
    problems = [str(error) for error in errors]
    if not any(root.glob("*/*.yaml")):  # nothing checked is not "OK"
        problems.append(f"{root} holds no <system>/<entity>.yaml: no mapping file to check")
    rules = root / RULES_FILE.name  # the delivery planner's rules live beside the mappings
    try:
        if rules.exists() or rules == RULES_FILE:
            DeliveryRules.load(rules)
    except ValueError as exc:
        problems.append(str(exc))
    for problem in problems:
        typer.echo(problem, err=True)
    typer.echo(_coverage(native))
    if problems:
        typer.echo(f"{len(problems)} mapping error(s) in {root}", err=True)
        raise typer.Exit(1)
    typer.echo(f"{len(specs)} mapping file(s) OK in {root}")
