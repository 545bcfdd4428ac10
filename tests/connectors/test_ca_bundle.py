"""HUB_CA_BUNDLE is checked when a connector is built: a missing file, a folder or a file
without a PEM certificate is refused naming the variable and the fix. It used to end
`hub systems check` (and the first call of a sync) in a FileNotFoundError traceback from
inside the TLS set-up."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from app.cli.main import app
from connectors.settings import parse_ca_bundle

PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def test_a_pem_bundle_is_taken_and_blank_means_the_system_store(tmp_path: Path) -> None:
    bundle = tmp_path / "ca.pem"
    bundle.write_text(PEM)
    assert parse_ca_bundle(f" {bundle} ") == str(bundle)
    assert parse_ca_bundle("") is None and parse_ca_bundle("  ") is None


@pytest.mark.parametrize(
    ("name", "said"),
    [("missing.pem", "No such file"), ("folder", "Is a directory"), ("notes.txt", "no PEM")],
)
def test_a_bundle_that_cannot_be_used_is_named(tmp_path: Path, name: str, said: str) -> None:
    (tmp_path / "folder").mkdir()
    (tmp_path / "notes.txt").write_text("not a certificate\n")
    with pytest.raises(ValueError, match=f"HUB_CA_BUNDLE=.*{name}.*{said}") as caught:
        parse_ca_bundle(str(tmp_path / name))
    assert "unset it for the system store" in str(caught.value)


def test_systems_check_reports_it_without_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HUB_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("SALESFORCE_LOGIN_URL", "https://127.0.0.1:9")
    monkeypatch.setenv("SALESFORCE_CLIENT_ID", "id")
    monkeypatch.setenv("SALESFORCE_CLIENT_SECRET", "secret")
    monkeypatch.setenv("SALESFORCE_USERNAME", "hub@example.com")
    monkeypatch.setenv("HUB_CA_BUNDLE", str(tmp_path / "missing.pem"))
    done = CliRunner().invoke(app, ["systems", "check", "--system", "salesforce"])
    assert done.exit_code == 1, done.output
    assert done.exception is None or isinstance(done.exception, SystemExit), done.exception
    assert "salesforce" in done.output and "HUB_CA_BUNDLE=" in done.output, done.output
