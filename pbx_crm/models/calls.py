"""The calls as the PBX saw them, each tied to its deal and contact, and the sellers' legs each
rang (``call_legs``: who was rung, how long, who answered, who talked how long)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (CheckConstraint, Column, Float, Index, Integer, String, UniqueConstraint,
                        text)
from sqlmodel import Field, SQLModel

from ..enums import CallDirection
from .base import _at, _checked, _fk

_MISSED_INBOUND = "direction = 'inbound' AND disposition IN ('missed', 'abandoned')"


class Call(SQLModel, table=True):
    """One call as the PBX saw it, keyed by the Asterisk channel uniqueid."""

    __tablename__ = "calls"
    __table_args__ = (
        _checked("direction", CallDirection),
        CheckConstraint("disposition IS NULL OR disposition IN "
                        "('answered', 'missed', 'abandoned', 'busy', 'failed')",
                        name="disposition"),
        # The robots' "missed call not returned": missed inbound calls by when they ended.
        Index("ix_calls_missed_ended", "ended_at", sqlite_where=text(_MISSED_INBOUND),
              postgresql_where=text(_MISSED_INBOUND)),
        # A deal's calls in time order: a call's call back (``called_back_at``) is one probe
        # or one update through it.
        Index("ix_calls_deal_ringing", "deal_id", "ringing_at"),
        # The callback report: the period's missed calls with their deal and call back, read
        # from the index alone.
        Index("ix_calls_missed_ringing", "ringing_at", "deal_id", "called_back_at",
              sqlite_where=text(_MISSED_INBOUND), postgresql_where=text(_MISSED_INBOUND)),
    )

    id: int | None = Field(default=None, primary_key=True)
    uniqueid: str = Field(sa_column=Column(String(64), nullable=False, unique=True))
    linkedid: str = Field(sa_column=Column(String(64), nullable=False, index=True))
    direction: str = Field(sa_column=Column(String(8), nullable=False))
    caller_raw: str = Field(default="", sa_column=Column(String(80), nullable=False,
                                                         server_default=""))
    caller_e164: str | None = Field(default=None, sa_column=Column(String(16), nullable=True,
                                                                   index=True))
    caller_name: str | None = Field(default=None, sa_column=Column(String(200), nullable=True))
    did: str | None = Field(default=None, sa_column=Column(String(64), nullable=True))
    dialed_raw: str | None = Field(default=None, sa_column=Column(String(80), nullable=True))
    # Comma-separated extensions the call rang (ring groups ring several).
    rung_extensions: str | None = Field(default=None, sa_column=Column(String(500),
                                                                       nullable=True))
    answered_exten: str | None = Field(default=None, sa_column=Column(String(32), nullable=True))
    # The device that answered for answered_exten ("101b", a softphone), when not the extension.
    answered_device: str | None = Field(default=None, sa_column=Column(String(40), nullable=True))
    answered_by_id: int | None = _fk("users.id", ondelete="SET NULL")
    ringing_at: datetime = _at()
    answered_at: datetime | None = _at(nullable=True)
    ended_at: datetime | None = _at(nullable=True)
    disposition: str | None = Field(default=None, sa_column=Column(String(10), nullable=True))
    hangup_cause: int | None = Field(default=None, nullable=True)
    # A call that went through a queue: its name, and the caller's wait there (seconds).
    queue: str | None = Field(default=None, sa_column=Column(String(64), nullable=True))
    hold_seconds: int | None = Field(default=None, sa_column=Column(Integer, nullable=True))
    # An inbound call's call back: when the deal's first later call out or answered call
    # rang (None: none yet). Kept by ``pbx_crm.funnel.calls`` as calls are recorded, in
    # whatever order they arrive; read by the callback report for the missed calls.
    called_back_at: datetime | None = _at(nullable=True)
    recording_ref: str | None = Field(default=None, sa_column=Column(String(500), nullable=True))
    deal_id: int | None = _fk("deals.id", ondelete="SET NULL", index=True)
    contact_id: int | None = _fk("contacts.id", ondelete="SET NULL", index=True)


# How a seller's leg of a call ended (the tracker's ``Leg.outcome``).
LEG_OUTCOMES = ("answered", "cancelled", "noanswer", "busy", "unknown")


class CallLeg(SQLModel, table=True):
    """One seller's phone rung for a call, once per ring episode, in the order rung: a queue's
    members, a ring group's phones, the seller a call was transferred to. Written when the
    call ends, all of a call's legs at once (a repeat replaces them)."""

    __tablename__ = "call_legs"
    __table_args__ = (
        CheckConstraint("outcome IN (%s)" % ", ".join(f"'{o}'" for o in LEG_OUTCOMES),
                        name="outcome"),
        UniqueConstraint("call_id", "position"),
    )

    id: int | None = Field(default=None, primary_key=True)
    call_id: int = _fk("calls.id", nullable=False, ondelete="CASCADE")
    position: int = Field(sa_column=Column(Integer, nullable=False))
    extension: str = Field(sa_column=Column(String(32), nullable=False))
    user_id: int | None = _fk("users.id", ondelete="SET NULL")
    # The device that rang or answered for the extension ("101b"), "" when unknown.
    device: str = Field(default="", sa_column=Column(String(40), nullable=False,
                                                     server_default=""))
    outcome: str = Field(sa_column=Column(String(10), nullable=False))
    ring_seconds: float | None = Field(default=None, sa_column=Column(Float, nullable=True))
    # This seller's share of the conversation (a transferred call is split).
    talk_seconds: int | None = Field(default=None, sa_column=Column(Integer, nullable=True))
