"""``python -m privguard``: the command line. One command so far, ``migrate``.

argparse (the standard library) is enough for one command with four options; a CLI
framework would be a run-time dependency of every install for no gain.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO
from urllib.parse import unquote

from ._errors import PolicyError, StoreError

__all__ = ["main"]

#: The environment variable ``--dsn`` defaults to (the one the demo reads, too).
STORE_URL_ENV = "PRIVGUARD_STORE_URL"

OK, PENDING, USAGE, FAILED = 0, 1, 2, 3


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m privguard",
        description="privguard's command line.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    migrate = commands.add_parser(
        "migrate",
        help="bring a store's schema up to this privguard's version",
        description=(
            "Apply the missing schema migrations of a PostgreSQL or SQLite store, each in"
            " its own transaction. Safe to run from many processes at once (PostgreSQL"
            " serialises them with an advisory lock). Exit status: 0 current (or migrated),"
            " 1 migrations pending (with --check), 2 usage, 3 the store failed."
        ),
    )
    migrate.add_argument(
        "--dsn",
        default=os.environ.get(STORE_URL_ENV),
        help=(
            "postgresql://USER@HOST:PORT/DBNAME (any libpq DSN) or sqlite:///PATH;"
            f" default: ${STORE_URL_ENV}"
        ),
    )
    migrate.add_argument(
        "--schema", default="privguard", help="PostgreSQL schema (default: privguard)"
    )
    migrate.add_argument(
        "--check",
        action="store_true",
        help="change nothing: report the version, exit 1 if migrations are pending",
    )
    migrate.add_argument(
        "--connect-timeout",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="how long to wait for the database (default: 5)",
    )
    return parser


def main(argv: Sequence[str] | None = None, *, out: TextIO | None = None) -> int:
    """Run the command line; returns the exit status."""
    out = out if out is not None else sys.stdout
    args = _parser().parse_args(argv)
    if args.command == "migrate":
        return _migrate(args, out)
    return USAGE  # pragma: no cover - argparse refuses unknown commands


def _migrate(args: argparse.Namespace, out: TextIO) -> int:
    dsn = args.dsn
    if not dsn:
        print(f"privguard migrate: give --dsn or set ${STORE_URL_ENV}", file=sys.stderr)
        return USAGE
    try:
        if dsn.lower().startswith("sqlite:"):
            label, before, after, latest = _migrate_sqlite(dsn, args.check)
        else:
            label, before, after, latest = _migrate_postgres(dsn, args)
    except (StoreError, PolicyError, ImportError) as exc:
        # Messages name the store and the failure, never a password or a stored value.
        print(f"privguard migrate: {exc}", file=sys.stderr)
        return FAILED
    if args.check:
        if before < latest:
            print(
                f"{label}: at version {before}; {latest - before} migration(s) pending"
                f" (this privguard's version is {latest})",
                file=out,
            )
            return PENDING
        print(f"{label}: at version {before}, current", file=out)
        return OK
    if before == after:
        print(f"{label}: at version {after}, current; nothing to do", file=out)
    else:
        print(f"{label}: migrated from version {before} to {after}", file=out)
    return OK


def _migrate_postgres(dsn: str, args: argparse.Namespace) -> tuple[str, int, int, int]:
    from ._stores._postgres import SCHEMA_VERSION, migrate_database

    if dsn.lower().startswith("postgresql+"):
        dsn = "postgresql:" + dsn.partition(":")[2]
    label, before, after = migrate_database(
        dsn, schema=args.schema, check=args.check, connect_timeout=args.connect_timeout
    )
    return label, before, after, SCHEMA_VERSION


def _migrate_sqlite(url: str, check: bool) -> tuple[str, int, int, int]:
    from ._stores._sqlite import SCHEMA_VERSION, SQLiteStore

    rest = url.partition(":")[2]
    if not rest.startswith("///") or len(rest) == 3:
        raise PolicyError("a SQLite URL is sqlite:///relative/path or sqlite:////absolute/path")
    path = Path(unquote(rest[3:])).absolute()
    label = f"sqlite store {str(path)!r}"
    before = _sqlite_version(path)
    if check:
        return label, before, before, SCHEMA_VERSION
    SQLiteStore(path, migrate=True).close()
    return label, before, SCHEMA_VERSION, SCHEMA_VERSION


def _sqlite_version(path: Path) -> int:
    if not path.exists():
        return 0
    try:
        db = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
        try:
            version: int = db.execute("PRAGMA user_version").fetchone()[0]
        finally:
            db.close()
    except sqlite3.Error as exc:
        raise StoreError(f"sqlite store {str(path)!r}: cannot read the schema version") from exc
    return version
