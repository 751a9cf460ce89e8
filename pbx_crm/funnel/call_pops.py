"""What a recorded call's screen-pop says, and whether a seller's browser shows it now.

The AMI listener pops a recorded call in the browser of each seller whose phone rings, and a
transfer (``funnel.transfers``) pops it for the seller the caller is handed to: both say what
the ``incoming`` hook's own pop says about the call (``known_call_payload``) and pop a
browser only when it does not show the call already (``pop_shown``). Never commits.
"""

from __future__ import annotations

from sqlmodel import Session, select

from . import calls, events
from ..enums import CallDirection, DealSource
from ..models import Call, Contact, Deal, Event


def known_call_payload(session: Session, call: Call) -> dict:
    """What the ``incoming`` hook's pop says about a recorded call."""
    contact = session.get(Contact, call.contact_id) if call.contact_id else None
    if call.direction == CallDirection.INTERNAL.value:
        status = calls.INTERNAL
    elif not call.caller_e164:
        status = calls.ANONYMOUS
    elif call.contact_id is None and call.deal_id is None:
        status = calls.CONFLICT
    elif _opened_by(session, call):
        status = calls.NEW  # as the hook's own pop says: the deal is this call's
    else:
        status = calls.FOUND
    return {"uniqueid": call.uniqueid, "linkedid": call.linkedid, "status": status,
            "caller": call.caller_e164 or call.caller_raw,
            "caller_name": (contact.name if contact else "") or call.caller_name or "",
            "deal_id": call.deal_id, "contact_id": call.contact_id, "did": call.did,
            "recorded": True}


def _opened_by(session: Session, call: Call) -> bool:
    """Whether the call's deal was opened for it: a deal from a call, this one its first."""
    if call.deal_id is None:
        return False
    deal = session.get(Deal, call.deal_id)
    if deal is None or deal.source != DealSource.CALL.value:
        return False
    first = session.exec(select(Call.id).where(Call.deal_id == call.deal_id)
                         .order_by(Call.id)).first()
    return first == call.id


def pop_shown(session: Session, user_id: int, linkedid: str) -> bool:
    """Whether this seller's browser shows this call's pop now (a ringing not yet closed)."""
    last = session.exec(select(Event.kind).where(
        Event.target_user_id == user_id, Event.linkedid == linkedid,
        Event.kind.in_([events.RINGING, events.STOPPED_RINGING, events.CALL_ENDED]))
        .order_by(Event.id.desc())).first()
    return last == events.RINGING
