"""Numbered migration steps; each one runs on SQLite and on PostgreSQL."""
