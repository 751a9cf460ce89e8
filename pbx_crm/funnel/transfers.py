"""A call handed from one seller to another (a blind or attended transfer).

The AMI listener calls ``record_transfer`` once the caller talks to the new seller (the call
tracker's ``Transferred``). The timeline says who handed the caller to whom; the pop moves:
the seller who handed the call over gets ``call_ended`` (their card ends), the seller now on
the call gets a ``ringing`` (unless their browser shows the call already, as when their phone
rang for it) and an ``answered`` naming them, which the heads see too. A deal the caller
reached in Unsorted, taken by the seller who answered first, is taken by the seller who ends
up with the caller; a deal that had an owner before the call keeps it, unless the setting
``transfers_move_owner`` hands it to the new seller. Never commits.
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session, select

from . import events
from .call_pops import known_call_payload, pop_shown
from .calls import PBX
from .deals import assign_deal, load_deal, take_deal
from ..enums import TimelineKind
from ..errors import CrmError
from ..models import AuditEntry, Call, Deal, User, utcnow
from ..people.language import Words
from ..people.users import user_for_extension
from ..rules.funnel import Actor
from .journal import timeline

BLIND, ATTENDED = "blind", "attended"


def record_transfer(session: Session, call: Call, *, from_extension: str | None,
                    to_extension: str, kind: str, move_owner: bool = False,
                    pbx: str | None = None, now: datetime | None = None) -> None:
    """``call`` (recorded, inbound) went from ``from_extension`` to ``to_extension``, two
    extensions of box ``pbx`` (None: the default box)."""
    now = now or utcnow()
    giver = user_for_extension(session, from_extension, pbx) if from_extension else None
    taker = user_for_extension(session, to_extension, pbx)
    if call.deal_id is not None:
        said = Words("Call transferred from %(from_seller)s to %(to_seller)s",
                     from_seller=_who(giver, from_extension), to_seller=_who(taker, to_extension))
        # Not tied to the call row (call_id): the page would repeat the call's outcome and
        # duration beside it, which the call's own line says.
        timeline(session, PBX, call.deal_id, TimelineKind.CALL, say=said, at=now,
                 data={"transfer": kind, "call_id": call.id, "from_extension": from_extension,
                       "to_extension": to_extension,
                       "from_user_id": giver.id if giver else None,
                       "to_user_id": taker.id if taker else None})
        if taker is not None:
            _hand_deal_over(session, call, giver, taker, move_owner=move_owner, now=now)
    _move_pop(session, call, giver, taker, to_extension, now=now)


def _move_pop(session: Session, call: Call, giver: User | None, taker: User | None,
             to_extension: str, *, now: datetime) -> None:
    """The card leaves the browser of the seller who handed the call over and shows, answered,
    in the new seller's."""
    if giver is not None and (taker is None or giver.id != taker.id):
        events.emit(session, events.CALL_ENDED, target_user_id=giver.id,
                    payload={"uniqueid": call.uniqueid, "linkedid": call.linkedid,
                             "disposition": "transferred", "deal_id": call.deal_id,
                             "extension": to_extension},
                    deal_id=call.deal_id, linkedid=call.linkedid, now=now)
    if taker is None:
        return
    events.serialize_pops(session, call.linkedid)
    if not pop_shown(session, taker.id, call.linkedid):
        payload = known_call_payload(session, call)
        payload.update(extension=to_extension, source="transfer")
        events.emit(session, events.RINGING, target_user_id=taker.id, payload=payload,
                    deal_id=call.deal_id, linkedid=call.linkedid, now=now)
    events.emit_to_users(session, events.ANSWERED, [taker.id],
                         payload={"uniqueid": call.uniqueid, "linkedid": call.linkedid,
                                  "extension": to_extension, "user_id": taker.id,
                                  "deal_id": call.deal_id, "transferred": True},
                         deal_id=call.deal_id, linkedid=call.linkedid, now=now)


def _who(user: User | None, extension: str | None) -> Words | str:
    if user is not None:
        return user.name
    return Words("ext %(extension)s", extension=extension or "?")


def _hand_deal_over(session: Session, call: Call, giver: User | None, taker: User,
                    *, move_owner: bool, now: datetime) -> None:
    deal, stage = load_deal(session, call.deal_id)
    if deal.owner_id == taker.id:
        return
    try:
        if stage.is_unsorted and deal.owner_id is None:
            take_deal(session, Actor.of(taker), deal.id, now=now)
        elif move_owner or (giver is not None and _taken_in(session, call, deal, giver)):
            assign_deal(session, PBX, deal.id, owner_id=taker.id, now=now)
    except CrmError:
        pass  # closed meanwhile, or taken by someone else: the deal stays as it is


def _taken_in(session: Session, call: Call, deal: Deal, giver: User) -> bool:
    """Whether ``giver`` took the deal from Unsorted during this call (by answering it):
    the caller reached an Unsorted deal, which goes to whoever ends up with them."""
    return deal.owner_id == giver.id and session.exec(select(AuditEntry.id).where(
        AuditEntry.entity == "deal", AuditEntry.entity_id == deal.id,
        AuditEntry.action == "take", AuditEntry.user_id == giver.id,
        AuditEntry.at >= call.ringing_at)).first() is not None
