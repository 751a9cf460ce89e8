"""The event outbox: what the telephony processes tell the browsers (screen-pops).

A process that learns something (the FastAGI hooks, the AMI listener) writes an event row in
its own transaction; the web process delivers it to the signed-in browsers it concerns. On
PostgreSQL a ``NOTIFY`` goes out with the commit so the web process wakes at once; on SQLite
the web process polls the table. The row id is the stream position a browser resumes from.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import insert, or_, text
from sqlmodel import Session, select

from ..rules.funnel import Actor
from ..models import Event, utcnow

NOTIFY_CHANNEL = "pbx_crm_events"

RINGING = "ringing"
ANSWERED = "answered"
STOPPED_RINGING = "stopped_ringing"
CALL_ENDED = "call_ended"


def emit(session: Session, kind: str, *, target_user_id: int | None, payload: dict,
         deal_id: int | None = None, linkedid: str | None = None,
         now: datetime | None = None) -> Event:
    """Queue an event for one seller's browser (``target_user_id``) or for heads only (None)."""
    event = Event(kind=kind, target_user_id=target_user_id, deal_id=deal_id, linkedid=linkedid,
                  payload=payload, created_at=now or utcnow())
    session.add(event)
    session.flush()
    if session.get_bind().dialect.name == "postgresql":
        _notify(session, event.id)
    return event


_INSERT = insert(Event.__table__)
_INSERT_RETURNING_ID = _INSERT.returning(Event.__table__.c.id)
_NOTIFY = text("SELECT pg_notify(:channel, :id)")
_POPS_LOCK = text("SELECT pg_advisory_xact_lock(hashtext(:key))")


def _notify(session, event_id: int) -> None:
    """Wake the web processes' stream readers (delivered when the transaction commits)."""
    session.execute(_NOTIFY, {"channel": NOTIFY_CHANNEL, "id": str(event_id)})


def event_row(kind: str, target_user_id: int | None, *, payload: dict, deal_id: int | None,
              linkedid: str | None, now: datetime | None = None) -> dict:
    """One event's values, for ``emit_rows``."""
    return {"kind": kind, "target_user_id": target_user_id, "deal_id": deal_id,
            "linkedid": linkedid, "payload": payload, "created_at": now or utcnow()}


def emit_rows(session: Session, rows: list[dict]) -> None:
    """Events (``event_row``) in one plain statement, the AGI hooks' hot path; on PostgreSQL
    one wake-up for them all (a reader woken reads every event after its position)."""
    if not rows:
        return
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        ids = connection.execute(_INSERT_RETURNING_ID, rows).scalars().all()
        _notify(connection, max(ids))
    else:
        connection.execute(_INSERT, rows)


def serialize_pops(session: Session, *linkedids: str) -> None:
    """Make the writers of a call's pops (the AGI lookup's recording and the AMI listener)
    take turns, so each sees what the other wrote and no browser gets a pop twice. SQLite
    writers take turns anyway; PostgreSQL's run side by side, hence a lock per call (taken
    in order, when one writer serializes several calls)."""
    connection = session.connection()
    if connection.dialect.name == "postgresql" and linkedids:
        connection.execute(_POPS_LOCK, [{"key": "pops:" + linkedid}
                                        for linkedid in sorted(linkedids)])


def events_after(session: Session, actor: Actor, last_id: int, *, limit: int = 100) -> list[Event]:
    """Events after ``last_id`` for ``actor``'s browser: their own, and a head's copy of every
    call (the events addressed to nobody in particular); ``funnel.can_receive_event`` in SQL."""
    query = select(Event).where(Event.id > last_id)
    if actor.user_id is not None:
        mine = Event.target_user_id == actor.user_id
        query = query.where(or_(mine, Event.target_user_id.is_(None)) if actor.sees_everything
                            else mine)
    return list(session.exec(query.order_by(Event.id).limit(limit)))


def emit_to_users(session: Session, kind: str, user_ids, *, payload: dict,
                  deal_id: int | None = None, linkedid: str | None = None,
                  now: datetime | None = None) -> None:
    """One event per seller concerned (each browser filters by its own user), plus one for
    the heads, who watch every call."""
    targets = [None] + sorted({u for u in user_ids if u is not None})
    emit_rows(session, [event_row(kind, target, payload=payload, deal_id=deal_id,
                                  linkedid=linkedid, now=now) for target in targets])


def latest_event_id(session: Session) -> int:
    return session.exec(select(Event.id).order_by(Event.id.desc())).first() or 0
