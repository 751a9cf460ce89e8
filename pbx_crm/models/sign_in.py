"""Signing in to the web UI: the signed-in browsers and the failed sign-ins."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, Index, String
from sqlmodel import Field, SQLModel

from .base import _at, _fk


class WebSession(SQLModel, table=True):
    """A signed-in browser. The cookie holds a random token; only its SHA-256 is stored, so a
    copy of the table signs nobody in. Every web worker process reads the same rows."""

    __tablename__ = "web_sessions"

    id: int | None = Field(default=None, primary_key=True)
    token_hash: str = Field(sa_column=Column(String(64), nullable=False, unique=True))
    user_id: int = _fk("users.id", nullable=False, ondelete="CASCADE", index=True)
    # Sent back with every state-changing request (form field or header).
    csrf_token: str = Field(sa_column=Column(String(64), nullable=False))
    created_at: datetime = _at()
    last_seen_at: datetime = _at()
    expires_at: datetime = _at(index=True)


class LoginFailure(SQLModel, table=True):
    """One failed sign-in, counted per login and per address to slow down password guessing."""

    __tablename__ = "login_failures"
    __table_args__ = (
        Index("ix_login_failures_login", "login", "at"),
        Index("ix_login_failures_address", "address", "at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    login: str = Field(sa_column=Column(String(64), nullable=False))
    address: str = Field(sa_column=Column(String(64), nullable=False))
    at: datetime = _at()
