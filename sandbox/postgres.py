"""A throwaway PostgreSQL 15 on loopback, for tests and for a sandbox billing store on
PostgreSQL. Uses the ``initdb``/``pg_ctl`` binaries of the machine image; when run as root
(CI), the server runs as the ``postgres`` user because PostgreSQL refuses root."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sandbox.server import LOOPBACK, free_port

PG_BIN_CANDIDATES = ("/usr/lib/postgresql/15/bin", "/usr/local/bin", "/usr/bin")


class PostgresUnavailableError(RuntimeError):
    pass


def _pg_bin(name: str) -> str:
    for folder in (os.environ.get("PG_BIN_DIR", ""), *PG_BIN_CANDIDATES):
        candidate = Path(folder) / name
        if folder and candidate.exists():
            return str(candidate)
    found = shutil.which(name)
    if not found:
        raise PostgresUnavailableError(
            f"{name} not found: install PostgreSQL 15 server binaries (Debian: postgresql-15) "
            "or set PG_BIN_DIR"
        )
    return found


def _as_db_user(cmd: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return cmd
    return ["runuser", "-u", "postgres", "--", *cmd]


@contextmanager
def throwaway_postgres(dbname: str = "hub") -> Iterator[str]:
    """Start a fresh cluster in a temp dir; yields a SQLAlchemy URL; removes it all after."""
    root = Path(tempfile.mkdtemp(prefix="hub-pg-"))
    datadir, sockdir = root / "data", root / "sock"
    sockdir.mkdir()
    if os.geteuid() == 0:
        pg = pwd.getpwnam("postgres")
        for path in (root, sockdir):
            os.chown(path, pg.pw_uid, pg.pw_gid)
    port = free_port()
    log = root / "server.log"
    try:
        subprocess.run(
            _as_db_user(
                [
                    _pg_bin("initdb"),
                    "-D",
                    str(datadir),
                    "-U",
                    "postgres",
                    "-A",
                    "trust",
                    "-E",
                    "UTF8",
                    "--no-locale",
                    "--no-sync",
                ]
            ),
            check=True,
            capture_output=True,
        )
        opts = (
            f"-h {LOOPBACK} -p {port} -k {sockdir} -F "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
            "-c max_connections=200"
        )
        subprocess.run(
            _as_db_user(
                [
                    _pg_bin("pg_ctl"),
                    "-D",
                    str(datadir),
                    "-l",
                    str(log),
                    "-o",
                    opts,
                    "-w",
                    "-t",
                    "60",
                    "start",
                ]
            ),
            check=True,
            capture_output=True,
        )
        _create_db(port, dbname)
        yield f"postgresql+psycopg2://postgres@{LOOPBACK}:{port}/{dbname}"
    except subprocess.CalledProcessError as exc:
        detail = (exc.stderr or b"").decode(errors="replace")[-2000:]
        server_log = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        raise PostgresUnavailableError(
            f"could not start PostgreSQL: {detail}\n{server_log}"
        ) from None
    finally:
        if (datadir / "postmaster.pid").exists():
            subprocess.run(
                _as_db_user([_pg_bin("pg_ctl"), "-D", str(datadir), "-m", "immediate", "stop"]),
                capture_output=True,
            )
        shutil.rmtree(root, ignore_errors=True)


def _create_db(port: int, dbname: str) -> None:
    import psycopg2

    deadline = time.monotonic() + 30
    while True:
        try:
            conn = psycopg2.connect(host=LOOPBACK, port=port, user="postgres", dbname="postgres")
            break
        except psycopg2.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{dbname}"')
    conn.close()


def fresh_database(server_url: str, name: str) -> str:
    """The URL of database ``name`` on the server at ``server_url``, dropped and created
    anew (empty), for a test or a benchmark that needs a store of its own."""
    import sqlalchemy as sa

    engine = sa.create_engine(server_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return server_url.rsplit("/", 1)[0] + f"/{name}"
