"""Alembic environment for the pbx-crm schema (SQLite and PostgreSQL)."""
