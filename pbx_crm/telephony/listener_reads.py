"""What the AMI listener reads of the CRM about a call it follows, in its own transaction.

Kept apart from ``ami_listener`` (which writes) so that module stays readable in one sitting:
the CRM's record of an inbound call as the hooks wrote it, a seller's own call out, and whether
the heads saw the call's pop (then the listener, not a hook, closes what it popped).
"""

from __future__ import annotations

from sqlalchemy import null
from sqlmodel import Session, select

from ..enums import CallDirection
from ..funnel import calls, events
from ..models import Call, Event


def call_of(session: Session, uniqueid: str, linkedid: str) -> Call | None:
    """The CRM's record of an inbound call: by the AGI hooks' uniqueid, else by linkedid
    (a call first seen in a resync names its inbound leg by guess)."""
    if uniqueid:
        call = calls.find_call(session, uniqueid)
        if call is not None:
            return call
    return session.exec(select(Call).where(Call.linkedid == linkedid,
                                           Call.direction != CallDirection.OUTBOUND.value)
                        .order_by(Call.id)).first()


def outbound_call_of(session: Session, linkedid: str) -> Call | None:
    """A seller's own call out, recorded under its first channel (click-to-call names it:
    the Originate's ChannelId is its uniqueid and linkedid)."""
    return session.exec(select(Call).where(Call.linkedid == linkedid,
                                           Call.direction == CallDirection.OUTBOUND.value)
                        .order_by(Call.id)).first()


def heads_told(session: Session, linkedid: str) -> bool:
    """Whether the heads got this call's pop (from the listener: no hook recorded it)."""
    return session.exec(select(Event.id).where(
        Event.target_user_id.is_(null()), Event.linkedid == linkedid,
        Event.kind == events.RINGING)).first() is not None
