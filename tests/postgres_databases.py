"""PostgreSQL databases of a test's own on the test server (``PBX_CRM_TEST_POSTGRES_URL``)."""

from __future__ import annotations

import os
import time
import uuid
from contextlib import contextmanager

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ProgrammingError

from pbx_crm.db import make_engine

POSTGRES_URL = os.environ.get("PBX_CRM_TEST_POSTGRES_URL", "")


@contextmanager
def new_postgres_database(prefix: str, *, no_extensions: bool = False):
    """An empty database of its own on the test server (several runs may share it), dropped
    afterwards; yields an engine on it. ``no_extensions``: one where the engine's user may
    not create extensions (as an ordinary role whose database an admin made): the test
    server's user revokes its own right to, or, being a superuser (who may do anything),
    connects as a new role of its own that owns the schema, dropped as well."""
    if not POSTGRES_URL:
        pytest.skip("PBX_CRM_TEST_POSTGRES_URL is not set: run the suite with ./dev.sh test")
    server = make_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    url = make_url(POSTGRES_URL).set(database=name)
    own_role = False
    with server.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
        if no_extensions:
            own_role = connection.execute(text(
                "SELECT rolsuper FROM pg_roles WHERE rolname = current_user")).scalar_one()
            if own_role:
                connection.execute(text(f"CREATE ROLE {name} LOGIN PASSWORD 'plain'"))
            else:
                connection.execute(text(f'REVOKE CREATE ON DATABASE "{name}" '
                                        "FROM PUBLIC, CURRENT_USER"))
    if own_role:
        as_superuser = make_engine(url.render_as_string(False), isolation_level="AUTOCOMMIT")
        with as_superuser.connect() as connection:
            connection.execute(text(f"ALTER SCHEMA public OWNER TO {name}"))
        as_superuser.dispose()
        url = url.set(username=name, password="plain")
    engine = make_engine(url.render_as_string(False))
    try:
        yield engine
    finally:
        engine.dispose()
        with server.connect() as connection:
            _drop(connection, name)
            if own_role:
                connection.execute(text(f"DROP ROLE IF EXISTS {name}"))
        server.dispose()


def _drop(connection, name: str) -> None:
    """Drop the database, its connections closed. FORCE may not end an autovacuum worker
    busy in it (a superuser's process) and then fails at once: the worker is done within
    seconds, so try again."""
    for attempt in range(20):
        try:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            return
        except ProgrammingError as error:
            if attempt == 19 or "pg_signal_backend" not in str(error):
                raise
            time.sleep(0.5)
