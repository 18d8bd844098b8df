"""Database connection: one SQLAlchemy engine per process, the same code for SQLite and PostgreSQL.

SQLite runs in WAL mode with a busy timeout; every write transaction starts with ``BEGIN IMMEDIATE`` so writers
queue on the database lock up front instead of failing when a read lock cannot be upgraded. PostgreSQL runs at
READ COMMITTED and the store takes row locks (``FOR UPDATE``, ``SKIP LOCKED``) where an order matters.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

SQLITE_BUSY_TIMEOUT_MS = 30_000


def normalise_url(url: str) -> str:
    """``postgresql://`` / ``postgres://`` → the psycopg 3 driver (psycopg2 is not a dependency)."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


@dataclass(frozen=True)
class Database:
    engine: Engine

    @property
    def is_postgres(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    @contextlib.contextmanager
    def write(self) -> Iterator[Connection]:
        """One write transaction: committed on success, rolled back on any exception."""
        with self.engine.connect() as conn, conn.begin():
            yield conn

    @contextlib.contextmanager
    def read(self) -> Iterator[Connection]:
        """One read-only transaction (on SQLite a plain ``BEGIN``, which never blocks writers in WAL mode)."""
        with self.engine.connect() as conn:
            conn.execution_options(pixgen_readonly=True)
            with conn.begin():
                yield conn

    def dispose(self) -> None:
        self.engine.dispose()


def connect(url: str, *, pool_size: int = 8) -> Database:
    url = normalise_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
                               pool_size=pool_size, max_overflow=pool_size * 2)
        _sqlite_events(engine)
    else:
        engine = create_engine(url, pool_pre_ping=True, pool_size=pool_size, max_overflow=pool_size * 2)
    return Database(engine)


def _sqlite_events(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: sqlite3.Connection, _record: object) -> None:
        dbapi_conn.isolation_level = None  # we emit BEGIN ourselves (pysqlite's own handling defers it)
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        readonly = conn.get_execution_options().get("pixgen_readonly", False)
        conn.exec_driver_sql("BEGIN" if readonly else "BEGIN IMMEDIATE")


# -- migrations -------------------------------------------------------------------------------------------------

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
_PG_MIGRATION_LOCK = 72_4242  # pg_advisory_lock id: one process migrates at a time


def migrate(db: Database) -> None:
    """Create or upgrade the schema to the newest Alembic revision; safe when several processes start at once."""
    logging.getLogger("alembic").setLevel(logging.WARNING)  # one line per plugin on every start is noise
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    with _migration_lock(db) as conn, conn.begin():
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


@contextlib.contextmanager
def _migration_lock(db: Database) -> Iterator[Connection]:
    if db.is_postgres:
        with db.engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:id)"), {"id": _PG_MIGRATION_LOCK})
            conn.commit()
            try:
                yield conn
            finally:
                conn.rollback()
                conn.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": _PG_MIGRATION_LOCK})
                conn.commit()
        return
    database = db.engine.url.database
    lock_path = Path(f"{database}.migrate-lock") if database and database != ":memory:" else None
    # SQLite: an advisory file lock next to the database file (migrations do their own transactions).
    engine = create_engine(db.engine.url, poolclass=NullPool)
    _sqlite_events(engine)
    try:
        with contextlib.ExitStack() as stack:
            if lock_path is not None:
                fh = stack.enter_context(open(lock_path, "a"))
                fcntl.flock(fh, fcntl.LOCK_EX)
            with engine.connect() as conn:
                yield conn
    finally:
        engine.dispose()
