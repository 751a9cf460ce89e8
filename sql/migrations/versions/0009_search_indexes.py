"""Search by name through an index: deal titles and contact names found by any part of them.

The board's search box matches a case-insensitive substring of a deal's title or its
contact's name (``pbx_crm.funnel.board.search_cards``). ``LIKE '%…%'`` cannot use a B-tree index,
so each search read every deal; these indexes break substrings of three characters or more
into trigrams.

PostgreSQL: the ``pg_trgm`` extension (a trusted extension: the database owner may create
it) and GIN ``gin_trgm_ops`` indexes on ``lower(deals.title)`` and ``lower(contacts.name)``,
which the ``LIKE`` of the search uses as they are. When the extension cannot be created (a
role without the right, a server without the contrib modules), the upgrade goes on without
these indexes (with a warning) and searches keep scanning, as before; to add them later,
run ``CREATE EXTENSION pg_trgm`` as a role that may, then the two ``CREATE INDEX`` statements
of ``ix_deals_title_trgm`` and ``ix_contacts_name_trgm`` from ``sql/schema.postgres.sql``.
Downgrading drops the indexes and leaves the extension installed (other software on the
server may use it).

SQLite: two FTS5 tables with the ``trigram`` tokenizer (case-insensitive, Unicode case
folding), ``deal_title_fts`` over ``deals.title`` and ``contact_name_fts`` over
``contacts.name``, as external-content tables (they hold the index, not a copy of the
text), kept in step by triggers on every insert, delete and change of the title or the
name, whichever code writes the row. A later migration that rebuilds ``deals`` or
``contacts`` (batch mode copies the table and drops the old one, with its triggers) must
create these triggers again: the schema tests fail if it does not.

The indexes are built here from the existing rows, holding off writes to ``deals`` and
``contacts`` meanwhile: 17 s for a million deals and half a million contacts on PostgreSQL,
4 s for 100,000 deals on SQLite (a shared 2-core machine).

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-29 01:00:00
"""

import logging

from alembic import op
from sqlalchemy.exc import DBAPIError

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None

# (FTS table, content table, column): one trigram index each, on SQLite.
_SQLITE_INDEXES = (('deal_title_fts', 'deals', 'title'),
                   ('contact_name_fts', 'contacts', 'name'))
# (index, table, column), on PostgreSQL.
_POSTGRES_INDEXES = (('ix_deals_title_trgm', 'deals', 'title'),
                     ('ix_contacts_name_trgm', 'contacts', 'name'))


def upgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        _upgrade_postgres()
    else:
        _upgrade_sqlite()


def downgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        for index, _table, _column in _POSTGRES_INDEXES:
            op.execute(f'DROP INDEX IF EXISTS {index}')
        return
    for fts, _table, _column in _SQLITE_INDEXES:
        for event in ('insert', 'update', 'delete'):
            op.execute(f'DROP TRIGGER IF EXISTS {fts}_after_{event}')
        op.execute(f'DROP TABLE IF EXISTS {fts}')


def _upgrade_postgres() -> None:
    bind = op.get_bind()
    # In a savepoint: a refusal must not abort the migration's transaction.
    savepoint = bind.begin_nested()
    try:
        bind.exec_driver_sql('CREATE EXTENSION IF NOT EXISTS pg_trgm')
    except DBAPIError as error:
        savepoint.rollback()
        logging.getLogger('alembic.runtime.migration').warning(
            'pg_trgm could not be created (%s): search by name will scan the deals. To index '
            'it, run CREATE EXTENSION pg_trgm as a role that may, then the CREATE INDEX '
            'statements of ix_deals_title_trgm and ix_contacts_name_trgm from '
            'sql/schema.postgres.sql.', str(error.orig).strip())
        return
    savepoint.commit()
    for index, table, column in _POSTGRES_INDEXES:
        op.execute(f'CREATE INDEX IF NOT EXISTS {index} ON {table} '
                   f'USING gin (lower({column}) gin_trgm_ops)')


def _upgrade_sqlite() -> None:
    for fts, table, column in _SQLITE_INDEXES:
        op.execute(f"CREATE VIRTUAL TABLE {fts} USING fts5({column}, content='{table}', "
                   f"content_rowid='id', tokenize='trigram')")
        # The rows already there; afterwards the triggers keep the index in step.
        op.execute(f"INSERT INTO {fts} ({fts}) VALUES ('rebuild')")
        insert = f'INSERT INTO {fts} (rowid, {column}) VALUES (new.id, new.{column});'
        # External content: the index forgets a row by being told the text it indexed.
        forget = (f"INSERT INTO {fts} ({fts}, rowid, {column}) "
                  f"VALUES ('delete', old.id, old.{column});")
        op.execute(f'CREATE TRIGGER {fts}_after_insert AFTER INSERT ON {table} '
                   f'BEGIN\n    {insert}\nEND')
        op.execute(f'CREATE TRIGGER {fts}_after_update AFTER UPDATE OF id, {column} '
                   f'ON {table} BEGIN\n    {forget}\n    {insert}\nEND')
        op.execute(f'CREATE TRIGGER {fts}_after_delete AFTER DELETE ON {table} '
                   f'BEGIN\n    {forget}\nEND')
