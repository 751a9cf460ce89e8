"""The readable schema dumps in ``sql/`` that admins read instead of the migrations.

``dump_schema(engine)`` describes a migrated database as plain SQL, the same text on every
run, so ``sql/schema.sqlite.sql`` and ``sql/schema.postgres.sql`` can be committed and a test
can fail when they drift from the migrations. ``pbx-crm db dump`` prints it; the schema tests
compare it with the committed files. SQLite is read from ``sqlite_master`` (virtual tables
without the shadow tables they make for themselves); PostgreSQL is dumped by ``pg_dump`` and
stripped of what varies between runs and pg_dump versions.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess

from sqlalchemy import text
from sqlalchemy.engine import URL, Engine

from .db import current_revision


class SchemaDumpError(RuntimeError):
    """The dump cannot be made (no pg_dump, pg_dump failed, a database we do not know)."""


def dump_name(engine: Engine) -> str:
    """The short name in ``sql/schema.<name>.sql``: ``sqlite`` or ``postgres``."""
    names = {"sqlite": "sqlite", "postgresql": "postgres"}
    try:
        return names[engine.dialect.name]
    except KeyError:
        raise SchemaDumpError(f"no schema dump for {engine.dialect.name} databases") from None


def dump_schema(engine: Engine) -> str:
    """The schema of the database behind ``engine``, with a header naming its migration."""
    name = dump_name(engine)
    body = _dump_sqlite(engine) if name == "sqlite" else _dump_postgres(engine)
    header = (f"-- pbx-crm schema for {name} at migration {current_revision(engine) or 'none'};"
              f" regenerate with: pbx-crm db dump > sql/schema.{name}.sql")
    return f"{header}\n\n{body.strip()}\n"


# SQLite ------------------------------------------------------------------------------------

# Tables first so each index follows the table it needs when the file is replayed.
_SQLITE_ORDER = {"table": 0, "index": 1, "view": 2, "trigger": 3}


def _dump_sqlite(engine: Engine) -> str:
    with engine.connect() as connection:
        rows = connection.execute(text(
            "SELECT type, name, sql FROM sqlite_master"
            " WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'"
        )).all()
        # A virtual table (the FTS5 search indexes) keeps its data in shadow tables that
        # its CREATE VIRTUAL TABLE makes: they are its innards, and replaying their CREATE
        # TABLE after it would fail.
        shadows = {row.name for row in connection.exec_driver_sql("PRAGMA table_list")
                   if row.type == "shadow"}
    # Automatic indexes (UNIQUE, PRIMARY KEY) have no sql and come with their table.
    rows = sorted((row for row in rows if row.name not in shadows),
                  key=lambda row: (_SQLITE_ORDER.get(row.type, 9), row.name))
    # SQLAlchemy leaves a space after each comma; drop it so editors leave the file alone.
    statements = ("\n".join(line.rstrip() for line in row.sql.strip().rstrip(";").splitlines())
                  for row in rows)
    return "\n\n".join(statement + ";" for statement in statements)


# PostgreSQL --------------------------------------------------------------------------------

# Lines that change with the run or the pg_dump version, not with the schema: comments (they
# carry the versions), session SETs, the search_path reset, and the random-keyed
# \restrict / \unrestrict guards that pg_dump has emitted since 17.6 / 16.10 / 15.14.
_POSTGRES_NOISE = re.compile(
    r"^(--.*|SET .*|SELECT pg_catalog\.set_config\(.*|\\restrict\b.*|\\unrestrict\b.*)$"
)


def _dump_postgres(engine: Engine) -> str:
    pg_dump = shutil.which("pg_dump")
    if pg_dump is None:
        raise SchemaDumpError(
            "pg_dump is not installed or not on PATH; install the PostgreSQL client"
            " (Debian: apt install postgresql-client) to dump a PostgreSQL schema"
        )
    url = engine.url
    # libpq understands postgresql://user@host:port/db?options; the password goes through
    # the environment so it never shows in the process list. Built anew because
    # URL.set(password=None) keeps the password (set() skips arguments given as None).
    libpq_url = URL.create("postgresql", username=url.username, host=url.host, port=url.port,
                           database=url.database, query=url.query).render_as_string()
    env = dict(os.environ)
    if url.password is not None:
        env["PGPASSWORD"] = str(url.password)
    result = subprocess.run(
        [pg_dump, "--schema-only", "--no-owner", "--no-privileges", "--no-comments",
         f"--dbname={libpq_url}"],
        env=env, capture_output=True, text=True, check=False,
    )
    if result.returncode != 0:
        raise SchemaDumpError(f"pg_dump failed (exit {result.returncode}): "
                              f"{result.stderr.strip()}")
    return _clean_postgres(result.stdout)


def _clean_postgres(output: str) -> str:
    lines = [line.rstrip() for line in output.splitlines()
             if not _POSTGRES_NOISE.match(line.rstrip())]
    # Squeeze the blank-line runs the dropped lines leave behind into one blank line.
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
