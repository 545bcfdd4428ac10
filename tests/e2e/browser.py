"""Headless Chromium (Debian's package, installed by scripts/bootstrap.sh) driven by
Playwright; Playwright never downloads a browser of its own here."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # Playwright is imported by the browser test when it opens a page
    from playwright.sync_api import Locator, Page

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "artifacts"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        raise RuntimeError("chromium not found: run scripts/bootstrap.sh --with-test-deps")
    return found


@contextmanager
def browser_page() -> Iterator[Page]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            yield page
        finally:
            browser.close()


def dismiss_community_modal(page: Page) -> None:
    """Dagster OSS greets a new instance with a newsletter modal (dagster.yaml turns it off
    with ``nux``; an instance without that gets it). Whenever it shows up, before any
    action of the test, Playwright clicks Skip: no fixed wait when it never comes."""
    skip = page.get_by_role("button", name="Skip")
    page.add_locator_handler(skip, lambda button: button.click())


def screenshot(page: Page, name: str) -> Path:
    """``ARTIFACTS/name`` of what the page shows, dialogs' fade-in finished."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path), animations="disabled")
    return path


def app_goto(page: Page, path: str) -> None:
    """Go to ``path`` inside the Dagster app already loaded in ``page``, the way its own
    links do (history push, the router follows): a fresh page load parses and starts the
    whole UI bundle again, ~2-3 CPU seconds each on the CI."""
    page.evaluate(
        "path => { window.history.pushState({}, '', path);"
        " window.dispatchEvent(new PopStateEvent('popstate', {state: {}})); }",
        path,
    )
    page.wait_for_url(lambda url: url.endswith(path))


def set_launchpad_config(page: Page, config: str) -> None:
    """Replace the Launchpad editor's run config with ``config`` (YAML)."""
    editor = page.locator(".CodeMirror").first
    editor.click()
    page.keyboard.press("Control+A")
    page.keyboard.press("Delete")
    page.keyboard.insert_text(config)


def launch_run(page: Page) -> str:
    """Press the Launchpad's Launch Run; returns the id of the run whose page the UI
    opens, and goes back to the Launchpad (open the run with :func:`app_goto` once it is
    over)."""
    page.get_by_role("button", name="Launch Run").click()
    page.wait_for_url("**/runs/**")
    run_id = page.url.rstrip("/").split("/runs/")[1].split("?")[0]
    page.get_by_text(run_id[:8], exact=True).first.wait_for()  # the run page is up
    # back to the Launchpad while the run goes: the page of a running run redraws its
    # Gantt chart all the time (seconds of CPU per run in a software-rendering browser)
    page.go_back()
    page.locator(".CodeMirror").first.wait_for()
    return run_id


def launch_from_launchpad(page: Page, job: str, config: str) -> str:
    """Open ``job``'s Launchpad (in the loaded app), type ``config``, launch; the run id."""
    app_goto(page, f"/locations/hub/jobs/{job}/playground")
    set_launchpad_config(page, config)
    return launch_run(page)


def metadata_markdown(page: Page, scope: Page | Locator, entry: str) -> Locator:
    """Open the ``[Show Markdown]`` of metadata ``entry`` inside ``scope`` (a metadata
    table of the page or of a dialog); returns the dialog showing the Markdown."""
    row = scope.locator("tr", has=page.get_by_text(entry, exact=True))
    row.get_by_text("[Show Markdown]").click()
    return page.get_by_role("dialog").last  # the newest dialog is on top
