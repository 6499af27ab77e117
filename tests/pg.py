"""PostgreSQL for the test suite: the server, throwaway schemas and clusters.

Also a pytest plugin (``pytest_plugins = ["tests.pg"]`` in ``conftest.py``): tests marked
``postgres`` need a server at ``PRIVGUARD_TEST_PG_DSN`` (default
``postgresql://postgres@127.0.0.1:5432/test``). Without one they are skipped with one
reason, and the run ends with a line saying plainly that they did not run; where
``CI=true`` they fail instead. Every test works in a schema of its own and drops it.

Fault tests never stop the shared server: :class:`ThrowawayCluster` starts a cluster of
their own from the PostgreSQL binaries (``PRIVGUARD_TEST_PG_BIN``, default
``/usr/lib/postgresql/15/bin``), on a free port, and removes it afterwards.

PYTEST_DONT_REWRITE: ``conftest.py`` imports this module before registering it as a
plugin, and it holds no test assertions to rewrite.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from privguard._stores import PostgresStore, Store

PG_DSN = os.environ.get("PRIVGUARD_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
PG_BIN = Path(os.environ.get("PRIVGUARD_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
IN_CI = os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")

_counter = itertools.count(1)
_skipped: list[str] = []


def where(dsn: str) -> str:
    """host:port/database of a DSN, without user or password (for messages)."""
    try:
        from psycopg.conninfo import conninfo_to_dict

        params = conninfo_to_dict(dsn)
    except Exception:
        return "<unparseable DSN>"
    host = params.get("host") or "local socket"
    return f"{host}:{params.get('port') or 5432}/{params.get('dbname') or '-'}"


@functools.cache
def server_problem() -> str | None:
    """Why the PostgreSQL tests cannot run here, or None when the server answers."""
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed (pip install 'privguard[postgresql]')"
    try:
        with psycopg.connect(PG_DSN, connect_timeout=3, autocommit=True) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return f"no PostgreSQL server at {where(PG_DSN)} ({type(exc).__name__})"
    return None


@functools.cache
def cluster_problem() -> str | None:
    """Why a throwaway cluster cannot be started here, or None."""
    problem = server_problem()
    if problem and problem.startswith("psycopg"):
        return problem
    for tool in ("initdb", "pg_ctl", "postgres"):
        if not (PG_BIN / tool).exists():
            return f"no PostgreSQL server binaries in {PG_BIN} (set PRIVGUARD_TEST_PG_BIN)"
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        return "running as root without runuser: initdb refuses to run as root"
    return None


def _unavailable(problem: str) -> None:
    if IN_CI:
        pytest.fail(f"PostgreSQL tests must run where CI=true: {problem}", pytrace=False)
    pytest.skip(problem)


def require_server() -> str:
    """The test DSN, or skip (fail where CI=true) with the reason there is no server."""
    problem = server_problem()
    if problem:
        _unavailable(problem)
    return PG_DSN


def unique_schema(prefix: str = "t") -> str:
    """A schema name no other run or test uses (lower-case, within 48 characters)."""
    return f"pgt_{prefix}_{os.getpid()}_{next(_counter)}_{secrets.token_hex(3)}"[:48]


def drop_schema(schema: str, dsn: str = PG_DSN) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


class ThrowawaySchemaStore(PostgresStore):
    """A PostgresStore whose schema is dropped when it is closed."""

    _dropped = False

    def close(self) -> None:
        super().close()
        if not self._dropped:
            self._dropped = True
            drop_schema(self.schema, self._dsn)


def contract_store(tmp: Path) -> Store:
    """For ``conftest.STORE_FACTORIES``: a fresh schema per test, dropped afterwards."""
    dsn = require_server()
    return ThrowawaySchemaStore(dsn, schema=unique_schema("contract"), migrate=True, max_size=4)


# -- a cluster of our own, for tests that stop or kill the server -------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ThrowawayCluster:
    """A PostgreSQL cluster in a temporary directory, on a free port. Never the shared one.

    ``initdb`` refuses to run as root, so as root every server command runs as the
    ``postgres`` user, in a directory it owns.
    """

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="privguard-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "log"
        self.port = free_port()
        self.running = False
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:
            shutil.chown(self.root, "postgres", "postgres")

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = [str(PG_BIN / args[0]), *args[1:]]
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        return subprocess.run(command, capture_output=True, text=True, check=check, timeout=60)

    def init(self) -> ThrowawayCluster:
        data = str(self.data)
        self._run("initdb", "-D", data, "-A", "trust", "-U", "postgres", "-N", "-E", "UTF8")
        return self

    def start(self) -> None:
        options = (
            f"-k {self.root} -p {self.port} -c listen_addresses=127.0.0.1"
            " -c fsync=off -c max_connections=80 -c shared_buffers=16MB"
        )
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.log), "-w", "start")
        self.running = True

    def stop(self, mode: str = "fast") -> None:
        """Stop the server: ``fast`` (clean) or ``immediate`` (as if it crashed)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")
        self.running = False

    def kill(self) -> None:
        """SIGKILL the postmaster and every backend: a crash, recovered on the next start."""
        pid_file = self.data / "postmaster.pid"
        pid = int(pid_file.read_text().split()[0])
        children = subprocess.run(
            ["pgrep", "-P", str(pid)], capture_output=True, text=True, check=False
        ).stdout.split()
        for p in [pid, *map(int, children)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.02)
        self.running = False

    def remove(self) -> None:
        if self.running:
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop", check=False)
            self.running = False
        shutil.rmtree(self.root, ignore_errors=True)


# -- fixtures -----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def pg_dsn() -> str:
    """The shared test server's DSN (skipped, or failed where CI=true, without one)."""
    return require_server()


@pytest.fixture
def pg_schema(pg_dsn: str) -> Iterator[str]:
    """A schema name of this test's own, dropped afterwards."""
    schema = unique_schema()
    try:
        yield schema
    finally:
        drop_schema(schema, pg_dsn)


@pytest.fixture
def pg_store(pg_dsn: str, pg_schema: str) -> Iterator[PostgresStore]:
    """A migrated PostgresStore on the shared server, in a schema of its own."""
    store = PostgresStore(pg_dsn, schema=pg_schema, migrate=True, max_size=4)
    try:
        yield store
    finally:
        store.close()


@pytest.fixture(scope="module")
def pg_cluster() -> Iterator[ThrowawayCluster]:
    """A running cluster of this module's own (fault tests stop, kill and restart it)."""
    problem = cluster_problem()
    if problem:
        _unavailable(problem)
    cluster = ThrowawayCluster()
    try:
        cluster.init().start()
        yield cluster
    finally:
        cluster.remove()


def connect(dsn: str, **kwargs: Any) -> Any:
    import psycopg

    return psycopg.connect(dsn, autocommit=True, **kwargs)


# -- the plugin ---------------------------------------------------------------------------


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    marked = [item for item in items if item.get_closest_marker("postgres") is not None]
    if not marked:
        return
    problem = server_problem()
    if problem is None or IN_CI:
        return  # CI: let them run and fail with the reason
    skip = pytest.mark.skip(reason=f"PostgreSQL tests did not run: {problem}")
    for item in marked:
        item.add_marker(skip)
    _skipped.append(f"{problem}; {len(marked)} tests skipped")


def pytest_unconfigure(config: pytest.Config) -> None:
    # After pytest's own summary and its final counts: the last lines of the run.
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None:
        return
    for line in _skipped:
        reporter.write_sep("!", "PostgreSQL tests did NOT run", red=True, bold=True)
        reporter.write_line(f"  {line}.", red=True)
        reporter.write_line(
            "  Start PostgreSQL or set PRIVGUARD_TEST_PG_DSN (with CI=true they fail instead).",
            red=True,
        )
