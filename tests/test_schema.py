"""One schema, two databases: models, migrations and the dumps in sql/ agree, on both.

A migrated database must match ``pbx_crm.models`` and the committed ``sql/schema.*.sql``;
the migrations must run down and up again; and the constraints the services rely on must be
enforced by the database itself, on SQLite as on PostgreSQL.
"""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from postgres_databases import new_postgres_database
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.exc import IntegrityError

from pbx_crm import db, schema_dump
from pbx_crm.models import metadata, utcnow
from pbx_crm.schema_dump import SchemaDumpError, dump_name, dump_schema

REPO = Path(__file__).resolve().parents[1]
VERSIONS = REPO / "sql" / "migrations" / "versions"

REGENERATE = """\
sql/schema.{name}.sql no longer matches a freshly migrated {name} database.
If the migrations changed on purpose, regenerate the dump (see sql/README.md):
    pbx-crm db upgrade && pbx-crm db dump > sql/schema.{name}.sql
run against a new, empty {name} database, and commit it with the migration."""


# --- models, migrations and dumps agree ----------------------------------------------------


# The search indexes (migration 0009) are objects the models cannot describe: SQLite's FTS5
# tables with their shadow tables, PostgreSQL's trigram indexes (they need pg_trgm, and a
# database without it still works, scanning). The dumps hold them.
SEARCH_OBJECTS = {
    "sqlite": {"deal_title_fts", "contact_name_fts"}
    | {f"{fts}_{shadow}" for fts in ("deal_title_fts", "contact_name_fts")
       for shadow in ("data", "idx", "docsize", "config")},
    "postgresql": {"ix_deals_title_trgm", "ix_contacts_name_trgm"},
}


def objects_outside_the_models(connection) -> set[str]:
    """What the database holds that no model can: virtual tables and their shadow tables
    (SQLite), trigram indexes (PostgreSQL)."""
    if connection.dialect.name == "sqlite":
        return {row.name for row in connection.exec_driver_sql("PRAGMA table_list")
                if row.type in ("virtual", "shadow")}
    return set(connection.execute(text(
        "SELECT indexname FROM pg_indexes WHERE indexdef LIKE '%gin_trgm_ops%'")).scalars())


def test_the_migrated_database_matches_the_models(engine):
    with engine.connect() as connection:
        outside = objects_outside_the_models(connection)
        context = MigrationContext.configure(connection, opts={
            "compare_type": True,
            # Alembic misreads SQLite's empty-string default (calls.caller_raw) as a change;
            # PostgreSQL reports defaults faithfully, so they are compared there.
            "compare_server_default": engine.dialect.name == "postgresql",
            "include_name": lambda name, type_, parent_names: name not in outside,
        })
        differences = compare_metadata(context, metadata)
    assert differences == [], "pbx_crm/models/ and the migrations disagree; write a migration"


def test_the_only_objects_outside_the_models_are_the_search_indexes(engine):
    with engine.connect() as connection:
        assert objects_outside_the_models(connection) == SEARCH_OBJECTS[engine.dialect.name]


def test_the_migrated_database_has_the_models_check_constraints(engine):
    """compare_metadata does not look at CHECK constraints, so their names are compared here."""
    inspector = inspect(engine)
    for table in metadata.sorted_tables:
        expected = {c.name for c in table.constraints if c.__class__.__name__ == "CheckConstraint"}
        found = {c["name"] for c in inspector.get_check_constraints(table.name)}
        assert found == expected, f"CHECK constraints of {table.name}"


def test_the_schema_dump_matches_the_committed_file(engine):
    name = dump_name(engine)
    committed = (REPO / "sql" / f"schema.{name}.sql").read_text(encoding="utf-8")
    assert dump_schema(engine) == committed, REGENERATE.format(name=name)


def test_each_dump_opens_with_the_migration_it_was_taken_at():
    for name in ("sqlite", "postgres"):
        first_line = (REPO / "sql" / f"schema.{name}.sql").read_text().splitlines()[0]
        assert first_line == (f"-- pbx-crm schema for {name} at migration {db.head_revision()};"
                              f" regenerate with: pbx-crm db dump > sql/schema.{name}.sql")


# --- the migration steps ---------------------------------------------------------------------


def _revisions_of(path: Path) -> tuple[str, str | None]:
    values = {}
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            if node.targets[0].id in ("revision", "down_revision"):
                values[node.targets[0].id] = ast.literal_eval(node.value)
    return values["revision"], values["down_revision"]


def _migration_files() -> list[Path]:
    return sorted(VERSIONS.glob("[0-9]*.py"))


def test_the_head_revision_is_the_newest_migration_file():
    newest = _migration_files()[-1]
    assert db.head_revision() == _revisions_of(newest)[0], newest.name


def test_the_numbered_migration_files_form_one_line():
    previous = None
    for path in _migration_files():
        revision, down_revision = _revisions_of(path)
        assert path.name.startswith(f"{revision}_"), f"{path.name} holds revision {revision}"
        assert down_revision == previous, f"{path.name} should follow revision {previous}"
        previous = revision


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def fresh_engine(request, tmp_path):
    """An empty database of its own, not the shared test database the other tests use."""
    if request.param == "sqlite":
        engine = db.make_engine(f"sqlite:///{tmp_path / 'fresh.sqlite3'}")
        yield engine
        engine.dispose()
        return
    with new_postgres_database("pbx_crm_test_fresh") as engine:
        yield engine


def test_the_migrations_run_down_to_nothing_and_up_again(fresh_engine):
    db.upgrade(fresh_engine)
    assert db.current_revision(fresh_engine) == db.head_revision()

    command.downgrade(db.alembic_config(fresh_engine), "base")
    assert db.current_revision(fresh_engine) is None
    assert set(inspect(fresh_engine).get_table_names()) == {"alembic_version"}

    db.upgrade(fresh_engine)
    assert db.current_revision(fresh_engine) == db.head_revision()
    committed = db.schema_dump_path(dump_name(fresh_engine)).read_text(encoding="utf-8")
    assert dump_schema(fresh_engine) == committed, "the schema after down and up again"


def test_upgrading_an_up_to_date_database_changes_nothing(fresh_engine):
    db.upgrade(fresh_engine)
    before = dump_schema(fresh_engine)
    db.upgrade(fresh_engine)
    assert dump_schema(fresh_engine) == before


# --- the database itself enforces the rules the services rely on ----------------------------


def insert(engine, table: str, **values) -> int:
    with engine.begin() as connection:
        result = connection.execute(metadata.tables[table].insert().values(**values))
        return result.inserted_primary_key[0]


def refused(engine, table: str, constraint: str, **values) -> None:
    """The insert fails on ``constraint`` (SQLite names a unique index by its columns)."""
    with pytest.raises(IntegrityError, match=constraint):
        insert(engine, table, **values)


def a_user(engine, login, role="seller"):
    return insert(engine, "users", login=login, name=login.title(), password_hash="x",
                  role=role, active=True, created_at=utcnow())


def a_pipeline(engine, name="Sales"):
    return insert(engine, "pipelines", name=name, position=0, is_default=False,
                  creates_deals_from_calls=True, currency="IDR", created_at=utcnow())


def a_stage(engine, pipeline_id, name, *, is_unsorted=False, position=0):
    return insert(engine, "stages", pipeline_id=pipeline_id, name=name, position=position,
                  kind="open", is_unsorted=is_unsorted)


def deal_values(pipeline_id, stage_id, **changes):
    now = utcnow()
    return {"pipeline_id": pipeline_id, "stage_id": stage_id, "title": "Website redesign",
            "amount_minor": 0, "currency": "IDR", "priority": 1, "source": "manual",
            "created_at": now, "updated_at": now, "stage_entered_at": now,
            "last_activity_at": now, "version": 1} | changes


def call_values(uniqueid, **changes):
    return {"uniqueid": uniqueid, "linkedid": uniqueid, "direction": "inbound",
            "ringing_at": utcnow()} | changes


def test_a_pipeline_has_one_unsorted_stage_at_most(engine):
    sales, service = a_pipeline(engine, "Sales"), a_pipeline(engine, "Service")
    a_stage(engine, sales, "Unsorted", is_unsorted=True)
    a_stage(engine, sales, "Opportunity", position=1)
    a_stage(engine, sales, "Proposal", position=2)
    a_stage(engine, service, "Unsorted", is_unsorted=True)

    refused(engine, "stages", "uq_stages_pipeline_unsorted|stages.pipeline_id",
            pipeline_id=sales, name="Second unsorted", position=3, kind="open",
            is_unsorted=True)


def test_stage_names_are_unique_within_a_pipeline(engine):
    sales = a_pipeline(engine)
    a_stage(engine, sales, "Opportunity")
    refused(engine, "stages", "uq_stages_pipeline_id_name|stages.pipeline_id, stages.name",
            pipeline_id=sales, name="Opportunity", position=1, kind="open", is_unsorted=False)


def test_a_user_is_a_seller_or_a_head(engine):
    a_user(engine, "ana", role="seller")
    a_user(engine, "budi", role="head")
    refused(engine, "users", "ck_users_role", login="root", name="Root", password_hash="x",
            role="admin", active=True, created_at=utcnow())


@pytest.mark.parametrize("priority", [-1, 3])
def test_a_deal_priority_is_low_normal_or_high(engine, priority):
    pipeline = a_pipeline(engine)
    stage = a_stage(engine, pipeline, "Opportunity")
    for allowed in (0, 1, 2):
        insert(engine, "deals", **deal_values(pipeline, stage, priority=allowed))
    refused(engine, "deals", "ck_deals_priority",
            **deal_values(pipeline, stage, priority=priority))


def test_a_deal_amount_is_never_negative(engine):
    pipeline = a_pipeline(engine)
    stage = a_stage(engine, pipeline, "Opportunity")
    insert(engine, "deals", **deal_values(pipeline, stage, amount_minor=0))
    insert(engine, "deals", **deal_values(pipeline, stage, amount_minor=150_000_000_000))
    refused(engine, "deals", "ck_deals_amount_minor",
            **deal_values(pipeline, stage, amount_minor=-1))


def test_a_deal_in_a_stage_that_does_not_exist_is_refused(engine):
    pipeline = a_pipeline(engine)
    refused(engine, "deals", "fk_deals_stage_id_stages|FOREIGN KEY constraint failed",
            **deal_values(pipeline, 999))


def test_an_extension_rings_one_user_only(engine):
    ana, budi = a_user(engine, "ana"), a_user(engine, "budi")
    insert(engine, "user_extensions", user_id=ana, extension="101")
    insert(engine, "user_extensions", user_id=ana, extension="102")
    refused(engine, "user_extensions",
            "uq_user_extensions_extension|user_extensions.extension",
            user_id=budi, extension="101")


def test_a_call_is_recorded_once_per_asterisk_uniqueid(engine):
    insert(engine, "calls", **call_values("1732800000.42"))
    insert(engine, "calls", **call_values("1732800000.43", linkedid="1732800000.42"))
    refused(engine, "calls", "uq_calls_uniqueid|calls.uniqueid",
            **call_values("1732800000.42", direction="outbound"))


def test_a_call_direction_is_inbound_outbound_or_internal(engine):
    refused(engine, "calls", "ck_calls_direction", **call_values("1.1", direction="sideways"))


# --- how the PostgreSQL dump is taken ---------------------------------------------------------

FAKE_PG_DUMP = r"""#!/bin/sh
printf '%s\n' "$@" > "$(dirname "$0")/argv"
printf '%s' "$PGPASSWORD" > "$(dirname "$0")/password"
cat <<'OUT'
--
-- PostgreSQL database dump
--

\restrict Zk3q9s0dD1

-- Dumped from database version 15.18
SET statement_timeout = 0;
SET client_encoding = 'UTF8';
SELECT pg_catalog.set_config('search_path', '', false);



CREATE TABLE public.users (
    id integer NOT NULL
);


--
-- Name: users pk_users; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.users
    ADD CONSTRAINT pk_users PRIMARY KEY (id);

\unrestrict Zk3q9s0dD1

OUT
"""


def test_pg_dump_gets_a_libpq_url_and_the_password_only_through_the_environment(
        tmp_path, monkeypatch):
    fake = tmp_path / "pg_dump"
    fake.write_text(FAKE_PG_DUMP)
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    engine = create_engine("postgresql+psycopg://crm:s3cret@db.example:5433/crm?sslmode=require")

    body = schema_dump._dump_postgres(engine)

    argv = (tmp_path / "argv").read_text()
    assert "s3cret" not in argv
    assert "--dbname=postgresql://crm@db.example:5433/crm?sslmode=require" in argv.splitlines()
    assert (tmp_path / "password").read_text() == "s3cret"
    # What varies between runs and versions is gone; the schema itself is kept whole.
    assert body == ("CREATE TABLE public.users (\n    id integer NOT NULL\n);\n\n"
                    "ALTER TABLE ONLY public.users\n"
                    "    ADD CONSTRAINT pk_users PRIMARY KEY (id);")


def test_without_pg_dump_the_error_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    engine = create_engine("postgresql+psycopg://crm@db.example/crm")
    with pytest.raises(SchemaDumpError, match="pg_dump is not installed"):
        dump_schema(engine)
