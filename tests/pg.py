"""A real PostgreSQL server for the receiver's store tests (initdb in a temp dir, run as user postgres).

Load it with ``pytest_plugins = ("pg",)`` in a test module: ``postgres_server`` is session-scoped (each test
gets a fresh database through ``new_database()``), ``db_url`` parametrizes a test over SQLite and PostgreSQL.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from conftest import IN_CI, free_port


class PgServer:
    def __init__(self, port: int, sockdir: str, bindir: str) -> None:
        self.port = port
        self.sockdir = sockdir
        self.bindir = bindir

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def psql(self, sql: str) -> None:
        subprocess.run(
            ["runuser", "-u", "postgres", "--", f"{self.bindir}/psql", "-h", self.sockdir, "-p", str(self.port),
             "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-q", "-c", sql],
            check=True, capture_output=True, timeout=30)

    def new_database(self) -> str:
        name = "t_" + uuid.uuid4().hex[:12]
        self.psql(f"CREATE DATABASE {name}")
        return self.dsn(name)


def _missing(message: str) -> None:
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


class PgUnavailable(RuntimeError):
    """PostgreSQL is not installed here, or we may not run it."""


@contextmanager
def running_postgres() -> Iterator[PgServer]:
    """Start a throw-away PostgreSQL server (initdb in a temp dir, run as user postgres); stop it afterwards."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not candidates or shutil.which("runuser") is None:
        raise PgUnavailable("PostgreSQL not found: apt-get install postgresql")
    if os.geteuid() != 0:
        raise PgUnavailable("the PostgreSQL helper runs initdb as user postgres and needs root")
    bindir = str(Path(candidates[-1]).parent)
    base = tempfile.mkdtemp(prefix="optiinfra-pg-")
    data, sockdir = f"{base}/data", f"{base}/sock"
    os.makedirs(data)
    os.makedirs(sockdir)
    for path in (base, data, sockdir):
        shutil.chown(path, "postgres")
    subprocess.run(["runuser", "-u", "postgres", "--", f"{bindir}/initdb", "-D", data, "-A", "trust", "-U",
                    "postgres", "--no-sync"], check=True, capture_output=True, timeout=120)
    port = free_port()
    proc = subprocess.Popen(
        ["runuser", "-u", "postgres", "--", f"{bindir}/postgres", "-D", data, "-p", str(port), "-k", sockdir,
         "-c", "listen_addresses=127.0.0.1", "-c", "max_connections=200"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    server = PgServer(port, sockdir, bindir)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                server.psql("SELECT 1")
                break
            except subprocess.CalledProcessError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    proc.kill()
                    err = proc.stderr.read().decode() if proc.stderr else ""
                    raise RuntimeError(f"PostgreSQL did not start: {err[-2000:]}") from None
                time.sleep(0.2)
        yield server
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PgServer]:
    try:
        server_cm = running_postgres()
        server = server_cm.__enter__()
    except PgUnavailable as exc:
        _missing(str(exc))
    try:
        yield server
    finally:
        server_cm.__exit__(None, None, None)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A store URL: a fresh SQLite file, or a fresh database on the real PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/receiver.db"
    server: PgServer = request.getfixturevalue("postgres_server")
    return server.new_database()
