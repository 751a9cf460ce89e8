"""Who uses the CRM: the users, and the phone extensions that ring them."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, Column, Index, String, Text, UniqueConstraint, text, true
from sqlmodel import Field, SQLModel

from ..enums import Role
from .base import _at, _checked, _fk


class User(SQLModel, table=True):
    __tablename__ = "users"
    __table_args__ = (_checked("role", Role),)

    id: int | None = Field(default=None, primary_key=True)
    login: str = Field(sa_column=Column(String(64), nullable=False, unique=True))
    name: str = Field(sa_column=Column(String(120), nullable=False))
    password_hash: str = Field(sa_column=Column(String(255), nullable=False))
    role: str = Field(sa_column=Column(String(8), nullable=False))
    active: bool = Field(default=True, sa_column=Column(Boolean, nullable=False,
                                                        server_default=true()))
    team: str | None = Field(default=None, sa_column=Column(String(64), nullable=True))
    language: str = Field(default="en", sa_column=Column(String(8), nullable=False,
                                                         server_default="en"))
    time_zone: str | None = Field(default=None, sa_column=Column(String(64), nullable=True))
    # Where robot nudges go by e-mail (when SMTP is configured); empty: in the CRM only.
    email: str | None = Field(default=None, sa_column=Column(String(254), nullable=True))
    created_at: datetime = _at()


class UserExtension(SQLModel, table=True):
    """A phone extension that rings a user: a number on one Asterisk box (``pbx``; NULL is
    the default box, ``main``). An extension of a box belongs to one user at most; the same
    number may ring another seller on another box."""

    __tablename__ = "user_extensions"
    __table_args__ = (
        UniqueConstraint("pbx", "extension"),
        # NULLs never collide in a UNIQUE constraint: the default box needs its own index.
        Index("uq_user_extensions_extension", "extension", unique=True,
              sqlite_where=text("pbx IS NULL"), postgresql_where=text("pbx IS NULL")),
    )

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = _fk("users.id", nullable=False, ondelete="CASCADE", index=True)
    extension: str = Field(sa_column=Column(String(32), nullable=False))
    # The devices that ring for the extension, comma-separated ("101a,101b": a desk phone and
    # a softphone); empty: the extension is its own only device.
    devices: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    # The box the extension is on, as the settings name it ([pbx:jakarta]); NULL: main.
    pbx: str | None = Field(default=None, sa_column=Column(String(32), nullable=True))
