"""Run the whole emulated landscape in one process: seed once, serve, write sandbox.env.

``hub sandbox up`` and the tests' :func:`running_sandbox` both go through
:class:`Sandbox`: it prepares the data directory (TLS files, one DocumentStore per
emulator, the billing database), seeds everything on first start only (state lives in the
data directory and survives restarts), starts every emulator as its own uvicorn server on
one asyncio loop, waits until each answers ``/__sandbox/health`` and only then writes
``sandbox.env`` - so a script that waits for that file finds a landscape that answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import logging
import os
import secrets
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from sandbox.calls import CallCounting
from sandbox.faults import FaultSpec, FaultState
from sandbox.server import LOOPBACK, TLSFiles, listening_socket, uvicorn_config
from sandbox.store import DocumentStore

log = logging.getLogger(__name__)

ENV_FILE = "sandbox.env"
PID_FILE = "sandbox.pid"
SEED_FILE = "seed.json"
MANIFEST_FILE = "manifest.json"
SECRETS_FILE = "credentials.json"
BILLING_FILE = "billing.sqlite"


@dataclass(frozen=True)
class EmulatorSpec:
    """How the runner finds, configures and seeds one emulator package."""

    system: str
    module: str
    settings_class: str
    tls: bool = False
    seed_module: str = ""
    writer_class: str = ""

    @property
    def store_file(self) -> str:
        return f"{self.system}.sqlite"


EMULATORS: tuple[EmulatorSpec, ...] = (
    EmulatorSpec(
        "salesforce",
        "sandbox.salesforce",
        "SalesforceSettings",
        tls=True,
        seed_module="sandbox.seed.salesforce",
        writer_class="SalesforceWriter",
    ),
    EmulatorSpec(
        "sap",
        "sandbox.sap",
        "SapSettings",
        seed_module="sandbox.seed.sap",
        writer_class="SapWriter",
    ),
    EmulatorSpec(
        "pim",
        "sandbox.pim",
        "PimSettings",
        seed_module="sandbox.seed.pim",
        writer_class="PimWriter",
    ),
    EmulatorSpec(
        "wms",
        "sandbox.wms",
        "WmsSettings",
        seed_module="sandbox.seed.wms",
        writer_class="WmsWriter",
    ),
)
SYSTEMS = tuple(spec.system for spec in EMULATORS)


class SandboxError(RuntimeError):
    """Something the operator has to fix (a running sandbox, a bad fault spec...)."""


def parse_fault(text: str) -> tuple[str, FaultSpec]:
    """``SYSTEM=MODE[:k=v,...]`` (e.g. ``sap=429:rate=0.5,retry_after=2``) -> spec."""
    system, sep, rest = text.partition("=")
    if not sep or system not in SYSTEMS:
        raise SandboxError(f"--fault {text!r}: expected SYSTEM=MODE[:k=v,...], SYSTEM in {SYSTEMS}")
    mode, _, params = rest.partition(":")
    values: dict[str, Any] = {"mode": mode}
    for pair in filter(None, params.split(",")):
        key, eq, value = pair.partition("=")
        if not eq:
            raise SandboxError(f"--fault {text!r}: parameter {pair!r} is not k=v")
        values[key.strip().replace("-", "_")] = value.strip()
    try:
        return system, FaultSpec.model_validate(values)
    except ValueError as exc:
        raise SandboxError(f"--fault {text!r}: {exc}") from None


@dataclass
class SandboxConfig:
    data_dir: Path
    seed: int = 42
    customers: int = 300
    billing_url: str | None = None
    ports: dict[str, int] = field(default_factory=dict)
    faults: list[tuple[str, FaultSpec]] = field(default_factory=list)
    reseed: bool = False
    systems: tuple[str, ...] = SYSTEMS
    #: called while seeding (customers written, customers in the book), e.g. a progress bar
    seed_progress: Callable[[int, int], None] | None = None


@dataclass
class SandboxHandle:
    """What a running sandbox offers its users: the environment (the variables of
    ``sandbox.env``), each emulator's base URL, and where its files are."""

    data_dir: Path
    env: dict[str, str]
    urls: dict[str, str]
    billing_url: str
    manifest_path: Path
    ca_bundle: Path | None
    counters: dict[str, CallCounting] = field(default_factory=dict)

    def calls(self) -> dict[str, dict[str, Any]]:
        """API calls each emulator answered since start (or the last reset)."""
        return {system: c.snapshot() for system, c in self.counters.items()}

    def reset_calls(self) -> None:
        for counter in self.counters.values():
            counter.reset()

    def manifest(self) -> list[dict[str, Any]]:
        data: list[dict[str, Any]] = json.loads(self.manifest_path.read_text())
        return data

    def admin_url(self, system: str) -> str:
        return f"{self.urls[system]}/__sandbox"


class _QuietServer(uvicorn.Server):
    """A uvicorn server that leaves signals to the runner: several servers share one
    loop, and each would otherwise install (and later re-raise) its own handlers."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class Sandbox:
    """One landscape rooted in ``config.data_dir``."""

    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        self.dir = config.data_dir.resolve()
        self.billing_url = config.billing_url or f"sqlite:///{self.dir / BILLING_FILE}"
        self.specs = [s for s in EMULATORS if s.system in config.systems]
        self.stores: dict[str, DocumentStore] = {}
        self.faults: dict[str, FaultState] = {}
        self.settings: dict[str, Any] = {}
        self.apps: dict[str, Any] = {}
        self.counters: dict[str, CallCounting] = {}
        self.tls: TLSFiles | None = None
        self.urls: dict[str, str] = {}
        self.env: dict[str, str] = {}
        self._servers: list[uvicorn.Server] = []
        self._exiting = False
        #: the Salesforce Pub/Sub API (gRPC) emulator, while serving
        self.pubsub: Any = None

    # -- preparation -----------------------------------------------------------------------
    def prepare(self) -> None:
        """Everything up to serving: files, stores, apps and (first start only) the seed."""
        self.dir.mkdir(parents=True, exist_ok=True)
        _refuse_if_running(self.dir)
        if self.config.reseed:
            self._wipe()
        self.tls = _tls_files(self.dir)
        available = []
        for spec in self.specs:
            try:
                module = importlib.import_module(spec.module)
            except ImportError as exc:
                log.warning("emulator %s not available (%s): not started", spec.system, exc)
                continue
            if not hasattr(module, "create_app") or not hasattr(module, spec.settings_class):
                log.warning(
                    "emulator %s lacks create_app/%s: not started", spec.system, spec.settings_class
                )
                continue
            store = DocumentStore(self.dir / spec.store_file)
            self.stores[spec.system] = store
            self.faults[spec.system] = FaultState(seed=self.config.seed)
            self.settings[spec.system] = self._settings(spec, module)
            available.append((spec, module))
        self._seed_if_needed()
        for spec, module in available:
            app = module.create_app(
                self.stores[spec.system], self.faults[spec.system], self.settings[spec.system]
            )
            self.counters[spec.system] = CallCounting(app)
            self.apps[spec.system] = self.counters[spec.system]
        for system, fault in self.config.faults:
            if system not in self.faults:
                raise SandboxError(f"--fault for {system}, which is not running")
            self.faults[system].add(fault)

    def _settings(self, spec: EmulatorSpec, module: Any) -> Any:
        """Sandbox defaults of the emulator's settings, with secrets generated once per data
        directory (kept in credentials.json, 0600) so no two sandboxes share them."""
        settings_cls = getattr(module, spec.settings_class)
        overrides = _credentials(self.dir).get(spec.system, {})
        hook = _SETTINGS_HOOKS.get(spec.system)
        if hook is not None:
            overrides = hook(self.dir, overrides)
        return settings_cls(**overrides)

    def _wipe(self) -> None:
        for name in (SEED_FILE, MANIFEST_FILE, BILLING_FILE):
            (self.dir / name).unlink(missing_ok=True)
        for spec in EMULATORS:
            for suffix in ("", "-wal", "-shm"):
                (self.dir / f"{spec.store_file}{suffix}").unlink(missing_ok=True)
        if self.config.billing_url:
            import sqlalchemy as sa

            from connectors.billing_schema import metadata

            engine = sa.create_engine(self.config.billing_url)
            metadata.drop_all(engine)
            engine.dispose()

    def _seed_if_needed(self) -> None:
        marker = self.dir / SEED_FILE
        if marker.exists():
            seeded = json.loads(marker.read_text())
            if (seeded.get("seed"), seeded.get("customers")) != (
                self.config.seed,
                self.config.customers,
            ):
                log.warning(
                    "data dir already seeded with seed=%s customers=%s; keeping it "
                    "(use --reseed to start over)",
                    seeded.get("seed"),
                    seeded.get("customers"),
                )
            return
        import sqlalchemy as sa

        from sandbox.seed.billing import BillingWriter
        from sandbox.seed.book import Book
        from sandbox.seed.load import Writer, seed_systems

        engine = sa.create_engine(self.billing_url)
        writers: list[Writer] = [BillingWriter(engine)]
        for spec in self.specs:
            if spec.system not in self.stores:
                continue
            try:
                writer_cls = getattr(importlib.import_module(spec.seed_module), spec.writer_class)
            except (ImportError, AttributeError) as exc:
                log.warning("no seed writer for %s (%s): its store stays empty", spec.system, exc)
                continue
            writers.append(writer_cls(self.stores[spec.system]))
        book = Book(self.config.seed, self.config.customers)
        report = seed_systems(
            book, writers, self.dir / MANIFEST_FILE, progress=self.config.seed_progress
        )
        engine.dispose()
        marker.write_text(
            json.dumps(
                {
                    "seed": report.seed,
                    "customers": report.customers,
                    "systems": [w.system for w in writers],
                    "counts": report.counts,
                    "drifts": report.drifts,
                    "skipped_drifts": report.skipped_drifts,
                    "seconds": round(report.seconds, 2),
                },
                indent=2,
            )
        )

    # -- serving ---------------------------------------------------------------------------
    async def serve(
        self, stop: threading.Event | asyncio.Event | None = None, *, pid_file: bool = True
    ) -> None:
        """Serve every emulator until ``stop`` is set (or the servers are told to exit).
        ``pid_file``: only a sandbox that owns its process writes one (``hub sandbox down``
        signals that pid)."""
        servers: list[tuple[str, uvicorn.Server]] = []
        sockets: list[socket.socket] = []
        try:
            for spec in self.specs:
                if spec.system not in self.apps:
                    continue
                try:
                    sock = listening_socket(self.config.ports.get(spec.system, 0))
                except OSError as exc:
                    raise SandboxError(f"{spec.system} emulator: {exc.strerror}") from exc
                sockets.append(sock)
                port = int(sock.getsockname()[1])
                tls = self.tls if spec.tls else None
                server = _QuietServer(uvicorn_config(self.apps[spec.system], port, tls))
                servers.append((spec.system, server))
                scheme = "https" if tls else "http"
                self.urls[spec.system] = f"{scheme}://{LOOPBACK}:{port}"
        except SandboxError:
            for sock in sockets:
                sock.close()
            raise
        self._servers = [s for _, s in servers]
        tasks = [
            asyncio.create_task(s.serve(sockets=[sock]), name=f"emulator:{n}")
            for (n, s), sock in zip(servers, sockets, strict=True)
        ]
        try:
            await self._wait_started(servers, tasks)
            await self._wait_healthy()
            self._start_pubsub()
            env = self.environment()
            _write_env(self.dir / ENV_FILE, env)
            self.env = env  # set last: running_sandbox waits on it, then reads the file
            if pid_file:
                (self.dir / PID_FILE).write_text(f"{os.getpid()}\n")
            await self._wait_stop(stop, tasks)
        finally:
            self.request_exit()
            await asyncio.gather(*tasks, return_exceptions=True)
            if self.pubsub is not None:
                await asyncio.to_thread(self.pubsub.stop)
                self.pubsub = None
            for sock in sockets:
                sock.close()
            self._cleanup()

    def _start_pubsub(self) -> None:
        """The Salesforce emulator's Pub/Sub API (gRPC over TLS, loopback), beside it."""
        if "salesforce" not in self.apps or self.tls is None:
            return
        from sandbox.salesforce.pubsub import PubSubServer, find_emulator

        try:
            server = PubSubServer(
                find_emulator(self.apps["salesforce"]),
                self.tls,
                self.config.ports.get("salesforce_pubsub", 0),
            )
        except OSError as exc:
            raise SandboxError(f"salesforce Pub/Sub API: {exc}") from exc
        self.pubsub = server.start()

    def request_exit(self) -> None:
        self._exiting = True
        for server in self._servers:
            server.should_exit = True

    async def _wait_started(
        self, servers: list[tuple[str, uvicorn.Server]], tasks: list[asyncio.Task[None]]
    ) -> None:
        deadline = time.monotonic() + 30
        while not all(s.started for _, s in servers):
            for (name, _), task in zip(servers, tasks, strict=True):
                if task.done():
                    raise SandboxError(f"{name} emulator failed to start: {task.exception()}")
            if time.monotonic() > deadline:
                raise SandboxError("emulators did not start within 30 s")
            await asyncio.sleep(0.02)

    async def _wait_healthy(self) -> None:
        verify: Any = str(self.tls.ca_bundle) if self.tls else True
        async with httpx.AsyncClient(verify=verify, timeout=5) as client:
            for system, url in self.urls.items():
                deadline = time.monotonic() + 30
                while True:
                    try:
                        response = await client.get(f"{url}/__sandbox/health")
                        if response.status_code == 200:
                            break
                    except httpx.HTTPError:
                        pass
                    if time.monotonic() > deadline:
                        raise SandboxError(f"{system} did not answer {url}/__sandbox/health")
                    await asyncio.sleep(0.05)

    async def _wait_stop(
        self, stop: threading.Event | asyncio.Event | None, tasks: list[asyncio.Task[None]]
    ) -> None:
        while not self._exiting:
            if stop is not None and stop.is_set():
                return
            if any(t.done() for t in tasks):
                return
            await asyncio.sleep(0.1)

    def _cleanup(self) -> None:
        for name in (ENV_FILE, PID_FILE):
            path = self.dir / name
            if name == PID_FILE and path.exists() and path.read_text().strip() != str(os.getpid()):
                continue
            path.unlink(missing_ok=True)
        for store in self.stores.values():
            store.close()

    # -- environment -----------------------------------------------------------------------
    def environment(self) -> dict[str, str]:
        """The variables of sandbox.env (names fixed in ARCHITECTURE.md)."""
        env: dict[str, str] = {"BILLING_DATABASE_URL": self.billing_url}
        for system, url in self.urls.items():
            builder = _ENV_BUILDERS.get(system)
            if builder is not None:
                env.update(builder(url, self.settings[system], self.dir))
            env[f"SANDBOX_{system.upper()}_ADMIN_URL"] = f"{url}/__sandbox"
        if self.pubsub is not None:
            env["SALESFORCE_PUBSUB_URL"] = self.pubsub.target
        if self.tls is not None:
            env["HUB_CA_BUNDLE"] = str(self.tls.ca_bundle)
        env["SANDBOX_DATA_DIR"] = str(self.dir)
        env["SANDBOX_MANIFEST"] = str(self.dir / MANIFEST_FILE)
        env.update(cursor_overlaps())
        return env

    def handle(self) -> SandboxHandle:
        return SandboxHandle(
            data_dir=self.dir,
            env=dict(self.env),
            urls=dict(self.urls),
            billing_url=self.billing_url,
            manifest_path=self.dir / MANIFEST_FILE,
            ca_bundle=self.tls.ca_bundle if self.tls else None,
            counters=dict(self.counters),
        )


#: The emulators commit synchronously on this machine's clock: nothing lands late behind a
#: cursor, so a second of overlap covers them (the connectors' default, 300 s, is for real
#: systems' long transactions and clock skew). Without this, every incremental sync of a
#: freshly seeded sandbox re-read the whole book, its every record being minutes old.
SANDBOX_CURSOR_OVERLAP_SECONDS = "1"


def cursor_overlaps(seconds: str = SANDBOX_CURSOR_OVERLAP_SECONDS) -> dict[str, str]:
    """Each connector's cursor-overlap variable (as its settings declare it) set to
    ``seconds``."""
    from connectors.registry import SYSTEMS

    names = (system.env_names().get("cursor_overlap_seconds") for system in SYSTEMS)
    return {name: seconds for name in names if name}


# -- per-system glue (credentials, env names) -----------------------------------------------
def _credentials(data_dir: Path) -> dict[str, dict[str, Any]]:
    """Secrets for this data dir, generated on first use and kept across restarts."""
    path = data_dir / SECRETS_FILE
    data: dict[str, dict[str, Any]] = json.loads(path.read_text()) if path.exists() else {}
    missing = {s: f() for s, f in _SECRET_FACTORIES.items() if s not in data}
    if missing or not path.exists():
        data.update(missing)
        _write_private(path, json.dumps(data, indent=2))
    return data


def _token(n: int = 24) -> str:
    return secrets.token_urlsafe(n)


def _sap_settings(_: Path, overrides: dict[str, Any]) -> dict[str, Any]:
    """The book has Kuwaiti customers (KWD, three decimals): SAP's currency and country
    tables know KWD/KW as any S/4 system does, so extend the emulator's short lists."""
    from sandbox.sap.settings import SapSettings

    lists = {k: list(v) for k, v in SapSettings().code_lists.items()}
    for name, extra in (("currency", ("KWD",)), ("country", ("KW", "AE"))):
        lists[name] = [*lists.get(name, []), *(x for x in extra if x not in lists.get(name, []))]
    return {**overrides, "code_lists": lists}


def _sap_env(url: str, settings: Any, _: Path) -> dict[str, str]:
    return {
        "SAP_ODATA_URL": url,
        "SAP_USER": settings.user,
        "SAP_PASSWORD": settings.password,
        "SAP_CLIENT": settings.client,
    }


def _attrs(settings: Any, names: dict[str, str]) -> dict[str, str]:
    """Env variables from settings attributes (the emulators not written yet when this
    was: a missing attribute leaves the variable empty, which the runner test flags)."""
    return {env: str(getattr(settings, attr, "") or "") for env, attr in names.items()}


def _salesforce_env(url: str, settings: Any, _: Path) -> dict[str, str]:
    env = {"SALESFORCE_LOGIN_URL": url}
    env |= _attrs(
        settings,
        {
            "SALESFORCE_CLIENT_ID": "client_id",
            "SALESFORCE_CLIENT_SECRET": "client_secret",
            "SALESFORCE_USERNAME": "username",
            "SALESFORCE_PRIVATE_KEY_FILE": "private_key_file",
            "SALESFORCE_API_VERSION": "api_version",
        },
    )
    # the emulated org completes a Bulk API 2.0 job as it is closed: no need to wait the
    # half second a real org's small job takes before the first status call
    env["SALESFORCE_BULK_POLL_SECONDS"] = "0.02"
    return env


def _pim_env(url: str, settings: Any, _: Path) -> dict[str, str]:
    return {"PIM_URL": url} | _attrs(
        settings,
        {
            "PIM_CLIENT_ID": "client_id",
            "PIM_SECRET": "secret",
            "PIM_USERNAME": "username",
            "PIM_PASSWORD": "password",
        },
    )


def _wms_env(url: str, settings: Any, _: Path) -> dict[str, str]:
    return {"WMS_URL": url} | _attrs(settings, {"WMS_API_KEY": "api_key"})


def _salesforce_settings(data_dir: Path, overrides: dict[str, Any]) -> dict[str, Any]:
    """The connected app's JWT signing key pair: the hub signs with the private key
    (SALESFORCE_PRIVATE_KEY_FILE), the emulator verifies with the public key, as a
    connected app holds the uploaded certificate."""
    private, public = _rsa_key_pair(data_dir / "tls")
    return {**overrides, "private_key_file": str(private), "public_key_file": str(public)}


def _rsa_key_pair(folder: Path) -> tuple[Path, Path]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    private = folder / "salesforce-jwt-key.pem"
    public = folder / "salesforce-jwt-pub.pem"
    if private.exists() and public.exists():
        return private, public
    folder.mkdir(parents=True, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    _write_private(
        private,
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode(),
    )
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return private, public


_SECRET_FACTORIES: dict[str, Callable[[], dict[str, Any]]] = {
    "sap": lambda: {"password": _token()},
    "salesforce": lambda: {
        "client_id": "3MVG9sandbox" + secrets.token_hex(20),
        "client_secret": secrets.token_hex(32),
        "username": "integration@hub.sandbox",
    },
    "pim": lambda: {
        "client_id": "hub_" + secrets.token_hex(8),
        "secret": _token(),
        "username": "hub_integration",
        "password": _token(),
    },
    "wms": lambda: {"api_key": "wms_" + _token(32)},
}
_SETTINGS_HOOKS: dict[str, Callable[[Path, dict[str, Any]], dict[str, Any]]] = {
    "sap": _sap_settings,
    "salesforce": _salesforce_settings,
}
_ENV_BUILDERS: dict[str, Callable[[str, Any, Path], dict[str, str]]] = {
    "salesforce": _salesforce_env,
    "sap": _sap_env,
    "pim": _pim_env,
    "wms": _wms_env,
}


def _tls_files(data_dir: Path) -> TLSFiles | None:
    try:
        tls = importlib.import_module("sandbox.tls")
    except ImportError:
        log.warning("sandbox.tls not available: Salesforce cannot be served over HTTPS")
        return None
    files: TLSFiles = tls.ensure_tls(data_dir / "tls")
    return files


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


def _write_env(path: Path, env: dict[str, str]) -> None:
    """KEY=VALUE lines, written atomically (a reader never sees half a file), 0600 since
    they hold the sandbox's credentials."""
    tmp = path.with_suffix(".tmp")
    _write_private(tmp, "".join(f"{k}={v}\n" for k, v in env.items()))
    tmp.replace(path)


# -- process control -----------------------------------------------------------------------
def read_pid(data_dir: Path) -> int | None:
    path = data_dir / PID_FILE
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _refuse_if_running(data_dir: Path) -> None:
    pid = read_pid(data_dir)
    if pid is not None and pid != os.getpid() and _alive(pid):
        raise SandboxError(f"a sandbox (pid {pid}) is already running in {data_dir}")


def run_foreground(config: SandboxConfig, on_ready: Callable[[Sandbox], None]) -> None:
    """``hub sandbox up``: serve until SIGINT/SIGTERM, then shut down cleanly."""
    sandbox = Sandbox(config)
    sandbox.prepare()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, sandbox.request_exit)
        ready = asyncio.create_task(_notify_ready(sandbox, on_ready))
        try:
            await sandbox.serve()
        finally:
            ready.cancel()

    asyncio.run(main())


async def _notify_ready(sandbox: Sandbox, on_ready: Callable[[Sandbox], None]) -> None:
    while not sandbox.env:
        await asyncio.sleep(0.05)
    on_ready(sandbox)


def stop(data_dir: Path, timeout: float = 30.0) -> int | None:
    """``hub sandbox down``: SIGTERM the sandbox of ``data_dir`` and wait for it to exit.
    Returns the pid stopped, or None if none was running."""
    pid = read_pid(data_dir)
    if pid is None or not _alive(pid):
        (data_dir / PID_FILE).unlink(missing_ok=True)
        return None
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _alive(pid) and not _is_zombie(pid):
        if time.monotonic() > deadline:
            raise SandboxError(f"sandbox pid {pid} did not stop within {timeout:.0f} s")
        time.sleep(0.05)
    (data_dir / PID_FILE).unlink(missing_ok=True)
    return pid


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(") ", 1)[1].startswith("Z")
    except OSError:
        return False


@contextlib.contextmanager
def running_sandbox(
    data_dir: Path | str,
    *,
    seed: int = 42,
    customers: int = 300,
    billing_url: str | None = None,
    systems: tuple[str, ...] = SYSTEMS,
    reseed: bool = False,
    faults: list[tuple[str, FaultSpec]] | None = None,
) -> Iterator[SandboxHandle]:
    """The same landscape as ``hub sandbox up``, in a background thread of this process,
    for tests and the demo; torn down (stores closed, sandbox.env removed) on exit."""
    config = SandboxConfig(
        Path(data_dir),
        seed=seed,
        customers=customers,
        billing_url=billing_url,
        systems=systems,
        reseed=reseed,
        faults=list(faults or []),
    )
    sandbox = Sandbox(config)
    sandbox.prepare()
    stop_event = threading.Event()
    failure: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(sandbox.serve(stop_event, pid_file=False))
        except BaseException as exc:  # surfaced in the caller's thread
            failure.append(exc)

    thread = threading.Thread(target=run, name="sandbox", daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not sandbox.env:
        if failure:
            raise SandboxError(f"sandbox failed to start: {failure[0]}") from failure[0]
        if not thread.is_alive() or time.monotonic() > deadline:
            stop_event.set()
            raise SandboxError("sandbox did not become ready within 60 s")
        time.sleep(0.02)
    try:
        yield sandbox.handle()
    finally:
        stop_event.set()
        thread.join(timeout=30)
