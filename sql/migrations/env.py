"""Alembic environment: runs the numbered steps on the engine the caller hands over.

``pbx_crm.db.upgrade(engine)`` puts the engine into ``config.attributes``; there is no
alembic.ini and no URL read from the environment here. SQLite gets batch mode, so steps that
alter tables work there too.
"""

from alembic import context

from pbx_crm.models import metadata

config = context.config
engine = config.attributes.get("engine")
if engine is None:
    raise RuntimeError("run migrations through pbx_crm.db.upgrade(engine) or `pbx-crm db upgrade`")

with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
