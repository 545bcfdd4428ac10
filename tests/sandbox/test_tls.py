"""The sandbox CA: clients that trust only ``ca.pem`` talk HTTPS to the emulators, files
are reused across restarts and keys stay private."""

import stat
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from sandbox.server import serve_in_thread
from sandbox.tls import ensure_tls


def _app() -> Starlette:
    return Starlette(routes=[Route("/", lambda _: PlainTextResponse("hello"))])


def test_https_with_the_sandbox_ca_and_nothing_else(tmp_path: Path) -> None:
    tls = ensure_tls(tmp_path)
    with serve_in_thread(_app(), tls) as url:
        assert url.startswith("https://")
        assert httpx.get(url + "/", verify=str(tls.ca_bundle)).text == "hello"
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            httpx.get(url + "/")  # the system trust store does not know the sandbox CA


def test_files_are_reused_and_keys_are_private(tmp_path: Path) -> None:
    first = ensure_tls(tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    second = ensure_tls(tmp_path)
    assert second == first
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    for key in ("ca-key.pem", "server-key.pem"):
        assert stat.S_IMODE((tmp_path / key).stat().st_mode) == 0o600


def test_a_broken_server_certificate_is_replaced_under_the_same_ca(tmp_path: Path) -> None:
    tls = ensure_tls(tmp_path)
    ca = tls.ca_bundle.read_bytes()
    tls.certfile.write_text("garbage")
    again = ensure_tls(tmp_path)
    assert again.ca_bundle.read_bytes() == ca
    with serve_in_thread(_app(), again) as url:
        assert httpx.get(url + "/", verify=str(again.ca_bundle)).status_code == 200
