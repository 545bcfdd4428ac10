"""The floors of the house: imports only ever point down.

``connectors/`` (ground) imports nothing of ours; ``hub/`` (the domain) imports only
itself and the connectors, and never Dagster or a CLI library; the roof (``app/``) and the
dev tools (``sandbox/``, ``bench/``, ``schedules/``) sit above. Checked on the source text
(AST), so a lazy import inside a function counts too."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ROOF_LIBRARIES = (
    "dagster",
    "dagster_webserver",
    "dagster_graphql",
    "dagster_postgres",
    "typer",
    "click",
)
OURS = ("app", "hub", "connectors", "sandbox", "schedules", "bench", "mappings", "tests")

#: package -> the packages of ours it may import (itself always allowed)
ALLOWED: dict[str, tuple[str, ...]] = {
    "connectors": (),
    "hub": ("connectors", "mappings"),
}


def imported_modules(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


def violations(package: str) -> list[str]:
    allowed = {package, *ALLOWED[package]}
    out = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for line, module in imported_modules(path):
            top = module.split(".")[0]
            where = f"{path.relative_to(ROOT)}:{line}: imports {module}"
            if top in ROOF_LIBRARIES:
                out.append(f"{where} (the roof's library; belongs under app/)")
            elif top in OURS and top not in allowed:
                out.append(f"{where} ({package}/ may import only {sorted(allowed)})")
    return out


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_imports_point_down(package: str) -> None:
    assert violations(package) == []


def test_the_check_catches_an_upward_import(tmp_path: Path) -> None:
    """The rule is not vacuous: an upward import written the usual ways is seen."""
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from app.cli.main import app\n    import dagster\n")
    assert [m for _, m in imported_modules(bad)] == ["app.cli.main", "dagster"]


def test_hub_top_level_holds_only_domain_modules() -> None:
    """No job, asset, resource or command module sits flat in hub/ (they live in app/)."""
    roof_words = ("cli", "dagster", "definitions", "jobs", "resources", "assets", "launch")
    flat = [p.stem for p in (ROOT / "hub").glob("*.py")]
    assert not [name for name in flat if any(word in name for word in roof_words)]
