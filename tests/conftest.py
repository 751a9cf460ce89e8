"""Test fixtures: every database test runs on SQLite and on PostgreSQL.

PostgreSQL comes from ``PBX_CRM_TEST_POSTGRES_URL`` (the test command starts the local
cluster and sets it). Without it the PostgreSQL half is skipped with a reason; with it set but
unreachable, the run fails rather than quietly testing one database.
"""

from __future__ import annotations

import gc
import io
import os
import shutil
import sys

import argon2
import pytest
from postgres_databases import new_postgres_database
from sqlalchemy import text

from pbx_crm.cli import main as cli
from pbx_crm.people import users
from pbx_crm.config import Settings
from pbx_crm.db import make_engine, transaction, upgrade
from pbx_crm.models import metadata
from pbx_crm.simulator.ami import FakeAmiServer


@pytest.fixture(autouse=True, scope="module")
def _earlier_modules_kept_out_of_the_garbage_collector():
    """What earlier test modules left alive (session fixtures, engines' statement caches,
    pytest's reports) is kept out of the collector's full passes, as if each module ran in a
    process of its own. Without this a full pass over the run's process took up to 1.3 s
    late in the run, against 40 ms in a FastAGI process after 600 calls: a test whose hook
    has a budget of 500 ms saw its call spooled when a pass fell inside it."""
    gc.collect()
    gc.freeze()


@pytest.fixture(autouse=True, scope="session")
def _cheap_password_hashing():
    """Real Argon2, at its cheapest cost: the suite creates hundreds of users."""
    users.use_password_profile(argon2.profiles.CHEAPEST)


@pytest.fixture(autouse=True)
def _scrub_environment(monkeypatch):
    """The app's own variables from the developer's shell never leak into a test."""
    for name in list(os.environ):
        if name.startswith("PBX_CRM_") and name != "PBX_CRM_TEST_POSTGRES_URL":
            monkeypatch.delenv(name)


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory):
    """One migrated SQLite file, copied for each test (migrating costs more than copying)."""
    path = tmp_path_factory.mktemp("template") / "template.sqlite3"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    engine.dispose()  # the last connection to close folds the WAL back into the file
    return path


@pytest.fixture(scope="session")
def _postgres_engine():
    """A database of this run's own, migrated, dropped at the end."""
    with new_postgres_database("pbx_crm_test") as engine:
        upgrade(engine)
        yield engine


def _empty_all(engine) -> None:
    """Every table emptied and every id counting from 1 again. DELETE, not TRUNCATE: a test's
    few rows go in 3 ms, where TRUNCATE makes new files for some 40 tables (120-220 ms, a
    sixth of the suite). The lock first waits, as TRUNCATE would, for whatever a previous
    test left writing."""
    tables = metadata.sorted_tables
    names = ", ".join(f'"{t.name}"' for t in tables)
    with engine.begin() as connection:
        connection.execute(text(f"LOCK TABLE {names} IN ACCESS EXCLUSIVE MODE"))
        connection.execute(text("; ".join(f'DELETE FROM "{t.name}"' for t in reversed(tables))))
        sequences = connection.execute(text(
            "SELECT sequencename FROM pg_sequences WHERE schemaname = current_schema()")).scalars()
        restarts = ", ".join(f"setval('\"{name}\"', 1, false)" for name in sequences)
        if restarts:
            connection.execute(text(f"SELECT {restarts}"))
        # As the migrations leave a new database: the reports' daily counts kept in the
        # default company time zone (pbx_crm.reporting.days).
        connection.execute(text("INSERT INTO report_day_zone (id, time_zone) "
                                "VALUES (1, 'Asia/Jakarta')"))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def engine(request, tmp_path):
    """A migrated, empty database of each kind."""
    if request.param == "sqlite":
        path = tmp_path / "crm.sqlite3"
        shutil.copy(request.getfixturevalue("_sqlite_template"), path)
        engine = make_engine(f"sqlite:///{path}")
        yield engine
        engine.dispose()
    else:
        engine = request.getfixturevalue("_postgres_engine")
        _empty_all(engine)
        yield engine


@pytest.fixture
def proxy(engine):
    """PostgreSQL behind a proxy that can cut it off or hang it (``telephony.TcpProxy``);
    back to normal when the test ends. SQLite is a file in the process: such a test skips."""
    if engine.dialect.name != "postgresql":
        pytest.skip("a database that goes away behind the network needs a database server: "
                    "SQLite is a file in the process")
    from telephony import TcpProxy

    proxy = TcpProxy((engine.url.host or "127.0.0.1", engine.url.port or 5432))
    yield proxy
    proxy.close()


@pytest.fixture
def behind_proxy(engine, proxy):
    """An engine that reaches the test PostgreSQL through ``proxy``."""
    behind = make_engine(proxy.engine_url(engine.url))
    yield behind
    behind.dispose()


@pytest.fixture
def session(engine):
    """A session in one transaction, committed at the end of the test if it got there."""
    with transaction(engine) as session:
        yield session


@pytest.fixture
def settings(tmp_path, engine):
    return Settings(data_dir=tmp_path, database_url=str(engine.url.render_as_string(False)))


@pytest.fixture
def web(settings, engine):
    """The web UI over real HTTP on loopback, on the test database."""
    from webtools import WebServer

    with WebServer(settings, engine) as server:
        yield server


@pytest.fixture
def server():
    """The loopback AMI server the emulator ships, with the CRM's AMI user."""
    with FakeAmiServer(users={"crm": "secret"}) as server:
        yield server


@pytest.fixture
def pbx_crm_at(capsys, monkeypatch):
    """`pbx-crm` in-process on the database at a URL, as an admin types it:
    pbx_crm_at(url, "user", "list", stdin=...) -> (exit code, stdout, stderr)."""

    def run(url, *args, stdin: str | None = None):
        if stdin is not None:
            monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        code = cli.main(["--database-url", url, *args])
        out, err = capsys.readouterr()
        return code, out, err

    return run
