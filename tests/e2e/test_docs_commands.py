"""The docs are executable (issue 20): every command README.md and docs/operations.md show
a user is run as written, so documentation and behaviour cannot drift apart.

A command is a line of a fenced ``bash`` block, or an inline code span that starts with a
program (``hub``, ``make``, ``.venv/bin/...``, ``dg``, ``dagster``, ``curl``, ``pip``...).
Each one is in exactly one class:

- RUN_HERE: run verbatim by ``test_documented_commands_run_verbatim`` below (``bash -c``
  in the repo, on a 20-customer sandbox this test starts), exit code and no traceback;
- RUN_ELSEWHERE: run by another named test (or by CI itself, ``.ci/run``);
- NOT_RUN_BY_A_TEST: the few that no test can run (with the reason, and what is checked
  instead);
- a template (``hub sync [--entity E ...]``, ``hub quarantine list|show ID``) or a mention
  of a command that needs arguments (MENTIONS): the docs must also show a concrete example
  of the same subcommand that is in RUN_HERE or RUN_ELSEWHERE.

A new command in the docs that is in none of them fails
``test_every_documented_command_is_classified``, saying which and what to do.
"""

from __future__ import annotations

import os
import re
import resource
import shlex
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCS = ("README.md", "docs/operations.md")
SHELL_FENCES = {"bash", "sh", "shell", "console"}
#: an inline code span is a command when its first word is one of these programs ...
PROGRAMS = {
    "hub", "make", "dg", "dagster", "curl", "pip", "uv", "python", "python3", "bash",
    "sqlite3", "psql", "docker",
}  # fmt: skip
#: ... or a path starting with one of these
PROGRAM_PATHS = (".venv/bin/", "scripts/")

#: Run verbatim, in this order, by test_documented_commands_run_verbatim: (command,
#: expected exit code). All but the last run while the test's sandbox is up; sync comes
#: before everything that needs golden records or findings. `make demo` runs last, with
#: the sandbox stopped: it starts its own on the same data dir (seeded with 20 customers
#: by then, so it is the README's "second make demo", an incremental sync).
RUN_HERE: tuple[tuple[str, int], ...] = (
    ("hub db upgrade", 0),
    ("hub systems check", 0),
    (".venv/bin/hub --help", 0),
    ("hub sync", 0),
    ("hub sync --dry-run --entity customer", 0),
    ("hub reconcile", 0),
    ("hub findings --open", 0),
    ("hub resync --entity customer --key CUS-0000012 --system sap --dry-run", 0),
    ("hub resync --entity invoice --since 2025-06-29T22:00:00Z --until 2025-06-30T04:00:00Z", 0),
    ("hub resync --from-findings --dry-run", 0),
    ("hub quarantine list", 0),
    ("hub quarantine show 1", 0),
    ("hub quarantine retry", 0),
    ("hub tombstones list", 0),
    ("hub outbox held", 0),
    ("hub outbox release", 0),
    ("hub metrics", 0),
    ("dagster instance concurrency set salesforce_api 2", 0),
    ("make demo", 0),
)
#: Run after the sandbox session: they start their own sandbox on the same data dir.
WITHOUT_SANDBOX = {"make demo"}

DAGSTER_UI_TESTS = "tests/e2e/test_dagster_ui.py::"
MAKE_DEV_TEST = DAGSTER_UI_TESTS + "test_make_dev_serves_the_ui_as_the_readme_says"
#: Run verbatim by another test ("path::test_name"), by CI (".ci/run", which must contain
#: the command), or by the recipe of a make target that is run ("make demo").
RUN_ELSEWHERE: dict[str, str] = {
    "make test": ".ci/run",
    "make dev": MAKE_DEV_TEST,
    # that test sets the port with HUB_UI_PORT, which the Makefile reads into PORT
    "make dev PORT=3100": MAKE_DEV_TEST,
    "dg dev": "make dev",
    "hub demo": "make demo",
    "dagster dev": (
        "tests/e2e/test_browser_ui.py::"
        "test_the_operator_repairs_drift_from_the_check_to_a_passing_check"
    ),
    "hub sandbox up": (
        "tests/sandbox/runner/test_runner.py::test_up_writes_env_survives_restart_and_down_stops_it"
    ),
    "hub mappings check": "tests/test_cli_and_dagster.py::test_mappings_in_repo_are_valid",
    "hub tombstones restore customer CUS-0000003": (
        "tests/e2e/test_deletes.py::"
        "test_an_account_deleted_in_salesforce_is_tombstoned_propagated_and_restorable"
    ),
    "scripts/audit.sh": "tests/test_static_checks.py::test_no_known_vulnerable_dependency",
    # the listener's latency benchmark, small: a sandbox, hub listen, a latency table
    "python -m bench.events --quick": (
        "tests/events/test_bench_events.py::"
        "test_the_quick_events_benchmark_prints_latencies_and_loses_nothing"
    ),
    # runs until stopped: started as a subprocess, SIGKILLed and restarted, then SIGTERMed
    "hub listen": (
        "tests/events/test_listener_crash.py::"
        "test_a_listener_killed_at_a_random_point_loses_nothing_and_applies_nothing_twice"
    ),
}

#: Shown to a user, but no test can run them; checked otherwise (test_not_run_by_a_test).
NOT_RUN_BY_A_TEST: dict[str, str] = {
    '.venv/bin/pytest -m "not slow" -n 6': "a tier of this very suite (make test runs it all)",
    ".venv/bin/pytest -m slow -n 6": "a tier of this very suite, this test included",
    ".venv/bin/pytest tests/unit": "a tier of this very suite (make test runs it all)",
    "pip install '.[rfc]'": "needs SAP's proprietary NW RFC SDK, which no registry provides",
}

#: Named in prose as a command, refused without arguments: like a template, it needs a
#: concrete example.
MENTIONS = {"hub resync"}

PLACEHOLDER = re.compile(r"[A-Z][A-Z_]*")


@dataclass(frozen=True)
class DocCommand:
    command: str
    where: str  # file:line

    def __str__(self) -> str:
        return f"{self.where}: `{self.command}`"


def _is_command(text: str) -> bool:
    """A program's name alone (`hub`, `dg`) names it rather than running it."""
    words = text.split()
    if not words:
        return False
    return (words[0] in PROGRAMS and len(words) > 1) or words[0].startswith(PROGRAM_PATHS)


def extract_commands(markdown: str, name: str = "<doc>") -> list[DocCommand]:
    """Every command in ``markdown``: each line of a shell fence (comments dropped,
    ``\\`` continuations joined), and each inline code span starting with a program
    (table escapes ``\\|`` undone, a span wrapped over lines joined)."""
    found: list[tuple[int, DocCommand]] = []
    prose = []  # the text outside fences, fences blanked (line numbers kept)
    fence: str | None = None
    pending, pending_line = "", 0
    for number, line in enumerate(markdown.splitlines(), start=1):
        stripped = line.strip()
        if stripped.startswith("```"):
            fence = None if fence is not None else (stripped[3:].strip().lower() or "text")
            prose.append("")
            continue
        if fence is None:
            prose.append(line)
            continue
        prose.append("")
        if fence not in SHELL_FENCES:
            continue
        code = re.split(r"(?:^|\s)#(?:\s|$)", stripped, maxsplit=1)[0].strip()
        if stripped.startswith("$ "):
            code = code[2:]
        if not code and not pending:
            continue
        if not pending:
            pending_line = number
        if code.endswith("\\"):
            pending += code[:-1].rstrip() + " "
            continue
        text = " ".join((pending + code).split())
        pending = ""
        found.append((pending_line, DocCommand(text, f"{name}:{pending_line}")))
    text = "\n".join(prose)
    for match in re.finditer(r"`([^`]+)`", text):
        span = match.group(1)
        if "\n\n" in span:
            continue
        command = " ".join(span.replace("\\|", "|").split())
        if _is_command(command):
            number = text.count("\n", 0, match.start()) + 1
            found.append((number, DocCommand(command, f"{name}:{number}")))
    return [command for _, command in sorted(found, key=lambda pair: pair[0])]


def documented_commands() -> list[DocCommand]:
    commands: list[DocCommand] = []
    for doc in DOCS:
        commands += extract_commands((REPO / doc).read_text(), doc)
    return commands


def is_template(command: str) -> bool:
    """Syntax, not a command: brackets, alternatives, ``...``, ``<x>`` or a placeholder
    word (E, ID, URL), or a MENTION."""
    unquoted = re.sub(r"'[^']*'|\"[^\"]*\"", "x", command)
    if command in MENTIONS or any(mark in unquoted for mark in ("[", "|", "...", "<")):
        return True
    return any(PLACEHOLDER.fullmatch(word) for word in unquoted.split()[1:])


def subcommand(template: str) -> tuple[str, ...]:
    """The words a template starts with before its first option, placeholder or syntax:
    ``hub quarantine list|show ID`` -> (hub, quarantine); ``hub quarantine show ID`` ->
    (hub, quarantine, show)."""
    words: list[str] = []
    for word in template.split():
        if word.startswith(("-", "[", "<")) or PLACEHOLDER.fullmatch(word):
            break
        if any(mark in word for mark in ("|", "...")):
            break
        words.append(word)
    return tuple(words)


def make_recipes() -> dict[str, list[str]]:
    """``make TARGET`` -> the programs its Makefile recipe runs from .venv/bin, as
    commands (``make demo`` -> ``hub demo``): an example of those subcommands too."""
    recipes: dict[str, list[str]] = {}
    target = ""
    for line in (REPO / "Makefile").read_text().splitlines():
        head = re.match(r"^([\w-]+):", line)
        if head:
            target = head.group(1)
        elif line.startswith("\t") and target:
            for run in re.finditer(r"\.venv/bin/(\w+(?: [\w.-]+)*)", line):
                recipes.setdefault(f"make {target}", []).append(run.group(1))
    return recipes


def classify(command: str) -> str:
    here = {c for c, _ in RUN_HERE}
    classes = [
        name
        for name, member in (
            ("run here", command in here),
            ("run elsewhere", command in RUN_ELSEWHERE),
            ("not run by a test", command in NOT_RUN_BY_A_TEST),
            ("template", is_template(command)),
        )
        if member
    ]
    assert len(classes) <= 1, f"`{command}` is in more than one class: {classes}"
    return classes[0] if classes else "unclassified"


# -- the extractor ------------------------------------------------------------------------


def test_extractor_reads_fences_and_inline_spans() -> None:
    doc = (
        "Intro `hub sync --json` and `hub/sync/lock.py` and `dagster.yaml`.\n"
        "\n"
        "```bash\n"
        "make demo   # set up\n"
        "\n"
        "# a comment line\n"
        "hub resync --entity customer \\\n"
        "  --key CUS-1\n"
        "```\n"
        "```yaml\n"
        "hub: not a command\n"
        "```\n"
        "| `hub quarantine list\\|show ID` | x |\n"
        "wrapped `hub resync --from-findings [--entity E ...]\n"
        "[--kind K]` and `.venv/bin/pytest -m slow`, `HUB_UI_PORT=1`, `make`\n"
    )
    got = [(c.command, c.where) for c in extract_commands(doc, "d.md")]
    assert got == [
        ("hub sync --json", "d.md:1"),
        ("make demo", "d.md:4"),
        ("hub resync --entity customer --key CUS-1", "d.md:7"),
        ("hub quarantine list|show ID", "d.md:13"),
        ("hub resync --from-findings [--entity E ...] [--kind K]", "d.md:14"),
        (".venv/bin/pytest -m slow", "d.md:15"),
    ]


def test_templates_and_their_subcommands() -> None:
    assert is_template("hub sync [--entity E ...] [--json]")
    assert is_template("hub quarantine show ID")
    assert is_template("hub resync")  # a mention
    assert not is_template("hub quarantine show 1")
    assert not is_template('.venv/bin/pytest -m "not slow" -n 6')
    assert not is_template("make dev PORT=3100")
    assert not is_template("pip install '.[rfc]'")
    assert subcommand("hub quarantine list|show ID|retry [ID ...]") == ("hub", "quarantine")
    assert subcommand("hub quarantine show ID") == ("hub", "quarantine", "show")
    assert subcommand("hub resync --entity E --key ID") == ("hub", "resync")
    assert make_recipes()["make demo"] == ["hub demo"]


def test_the_docs_hold_the_commands_this_test_knows() -> None:
    """Every command a class names is still in the docs (no stale entry runs a command
    nobody documents any more)."""
    shown = {c.command for c in documented_commands()}
    listed = {c for c, _ in RUN_HERE} | set(RUN_ELSEWHERE) | set(NOT_RUN_BY_A_TEST) | MENTIONS
    assert sorted(listed - shown) == [], "no longer in the docs: drop them from this test"


# -- the classification -------------------------------------------------------------------


def test_every_documented_command_is_classified() -> None:
    unclassified = [c for c in documented_commands() if classify(c.command) == "unclassified"]
    assert not unclassified, (
        "commands in the docs that no test runs:\n"
        + "\n".join(f"  {c}" for c in unclassified)
        + "\nAdd each to RUN_HERE in tests/e2e/test_docs_commands.py (run verbatim on the "
        "sandbox), or to RUN_ELSEWHERE naming the test that runs it verbatim; if it is "
        "syntax rather than a command, write it with placeholders ([--opt X], ID) and show "
        "a concrete example next to it."
    )


def test_the_tests_named_for_documented_commands_exist() -> None:
    runnable = {c for c, _ in RUN_HERE} | set(RUN_ELSEWHERE)
    for command, where in RUN_ELSEWHERE.items():
        if where.startswith("make "):
            runs = make_recipes().get(where, [])
            assert where in runnable and any(
                r.split()[: len(command.split())] == command.split() for r in runs
            ), f"`{command}`: the recipe of `{where}` does not run it ({runs})"
            continue
        path, _, name = where.partition("::")
        source = (REPO / path).read_text()
        if name:
            assert re.search(rf"^def {re.escape(name)}\(", source, re.MULTILINE), (
                f"`{command}`: {where} does not exist"
            )
        else:
            assert command in source, f"`{command}`: {path} does not run it"


def test_every_template_has_a_concrete_example() -> None:
    examples = [
        tuple(c.command.split())
        for c in documented_commands()
        if classify(c.command) in ("run here", "run elsewhere")
    ]
    missing = []
    for doc_command in documented_commands():
        if classify(doc_command.command) != "template":
            continue
        words = subcommand(doc_command.command)
        if not any(example[: len(words)] == words for example in examples):
            missing.append(f"  {doc_command} (no example of `{' '.join(words)}`)")
    assert not missing, (
        "templates without a concrete example the tests run:\n"
        + "\n".join(missing)
        + "\nShow one next to it in the docs (ids that exist in the seeded sandbox) and add "
        "it to RUN_HERE or RUN_ELSEWHERE."
    )


def test_not_run_by_a_test() -> None:
    """What is checked instead: the pytest tiers name a registered marker and an existing
    folder, with pytest-xdist for -n; the RFC hint the connector prints is the doc's."""
    markers = (REPO / "pyproject.toml").read_text()
    for command in NOT_RUN_BY_A_TEST:
        words = shlex.split(command)
        if words[0] != ".venv/bin/pytest":
            continue
        assert (REPO / words[0]).exists()
        if "-m" in words:
            for marker in re.findall(r"\w+", words[words.index("-m") + 1]):
                assert marker == "not" or f'"{marker}:' in markers, command
        if "-n" in words:
            assert (REPO / ".venv/bin/pytest").exists() and _has_module("xdist")
        paths = [w for w in words[1:] if "/" in w]
        assert all((REPO / p).is_dir() for p in paths), command
    from connectors.sap_rfc import INSTALL_HINT

    assert "pip install '.[rfc]'" in INSTALL_HINT
    assert re.search(r"^rfc = ", markers, re.MULTILINE)


def _has_module(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


# -- running them -------------------------------------------------------------------------


def _cpu_of_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _run(command: str, expected: int, env: dict[str, str]) -> tuple[float, float]:
    wall, cpu = time.monotonic(), _cpu_of_children()
    done = subprocess.run(
        ["bash", "-c", command],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = done.stdout + done.stderr
    assert done.returncode == expected, (
        f"`{command}` exited {done.returncode}, the docs expect {expected}:\n{output[-4000:]}"
    )
    assert "Traceback" not in output, f"`{command}` printed a traceback:\n{output[-4000:]}"
    return time.monotonic() - wall, _cpu_of_children() - cpu


def _report(timings: Iterable[tuple[str, float, float]]) -> None:
    rows = list(timings)
    print(f"\n{'wall s':>7} {'cpu s':>6}  command (children only)")
    for command, wall, cpu in rows:
        print(f"{wall:7.1f} {cpu:6.1f}  {command}")
    print(f"{sum(r[1] for r in rows):7.1f} {sum(r[2] for r in rows):6.1f}  total")


@pytest.mark.slow
def test_documented_commands_run_verbatim(tmp_path: Path) -> None:
    """Every RUN_HERE command as the docs write it, in one sandbox session (20 customers,
    seed 42, in $HUB_DATA_DIR/sandbox where `hub sandbox up` would put it), after `hub db
    upgrade`; `make demo` afterwards on the same data."""
    from sandbox.runner import running_sandbox

    data = tmp_path / "data"
    base = {
        **{k: v for k, v in os.environ.items() if k != "HUB_SANDBOX_DIR"},
        "PATH": f"{REPO / '.venv' / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
        "HUB_DATA_DIR": str(data),
        "HUB_DATABASE_URL": f"sqlite:///{data / 'hub.sqlite'}",
        "DAGSTER_HOME": str(data / "dagster_home"),
        "COLUMNS": "160",
    }
    timings: list[tuple[str, float, float]] = []
    with running_sandbox(data / "sandbox", seed=42, customers=20) as sb:
        env = {**base, **sb.env}
        for command, expected in RUN_HERE:
            if command not in WITHOUT_SANDBOX:
                timings.append((command, *_run(command, expected, env)))
    base = {k: v for k, v in base.items() if k not in sb.env}
    for command, expected in RUN_HERE:
        if command in WITHOUT_SANDBOX:
            timings.append((command, *_run(command, expected, base)))
    _report(timings)
