"""Calls as deal events: who is calling, who answered, how the call ended.

The AGI hooks and the AMI listener call these services; each is idempotent on the Asterisk
uniqueid, because a hook may be retried by the dialplan or replayed from the spool after the
database was down, and the same call must never be recorded twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import String, and_, bindparam, exists, func, literal_column, update
from sqlalchemy import select as core_select
from sqlmodel import Session, select

from . import call_backs, events, tasks
from ..reporting import days as report_days
from .contacts import contacts_with_number, find_contact_by_number
from .deals import deal_for_caller, load_deal, open_deal_of_contact, take_deal
from ..enums import (
    CallDirection, DealSource, Disposition, TimelineKind, is_missed_inbound,
)
from ..errors import N_, AlreadyTaken, Conflict, NumberConflict, Phrase
from ..rules.funnel import Actor
from .journal import timeline
from ..models import (
    Call, Contact, ContactPhone, Event, Deal, Pipeline, Stage, User, UserExtension, utcnow,
)
from ..rules.phones import CallerKind, CallerNumber
from ..people.language import Words
from ..people.users import device_extensions, device_names, user_for_extension

PBX = Actor.system("pbx")
# How a call ended, as every page and timeline line says it: the one mapping of outcomes to
# the catalogs' words (the web UI's ``outcome``).
OUTCOMES = {Disposition.ANSWERED.value: Phrase("answered"),
            Disposition.MISSED.value: Phrase("missed"),
            Disposition.ABANDONED.value: Phrase("abandoned"),
            Disposition.BUSY.value: Phrase("busy"),
            Disposition.FAILED.value: Phrase("failed")}
# A call's timeline line, by direction.
_CALL_LINE = {CallDirection.INBOUND.value: N_("Inbound call %(outcome)s: %(number)s"),
              CallDirection.OUTBOUND.value: N_("Outbound call %(outcome)s: %(number)s"),
              CallDirection.INTERNAL.value: N_("Internal call %(outcome)s: %(number)s")}

# What the dialplan learns in CRM_STATUS.
FOUND, NEW, ANONYMOUS, INTERNAL, CONFLICT, UNAVAILABLE = (
    "FOUND", "NEW", "ANONYMOUS", "INTERNAL", "CONFLICT", "UNAVAILABLE")

# Dial's DIALSTATUS -> how the call ended; unset (Dial never ran) means the caller gave up.
_DISPOSITIONS = {"ANSWER": "answered", "NOANSWER": "missed", "CANCEL": "abandoned",
                 "BUSY": "busy", "CONGESTION": "failed", "CHANUNAVAIL": "failed",
                 "": "abandoned"}


@dataclass(frozen=True)
class CallerLookup:
    """What the ``incoming`` hook hands back to the dialplan."""

    status: str
    deal_id: int | None = None
    contact_id: int | None = None
    caller_name: str = ""
    owner_extension: str = ""
    owner_id: int | None = None  # the seller behind owner_extension
    # The devices that ring for owner_extension ("101a", "101b"); none: the extension itself.
    owner_devices: tuple[str, ...] = ()


def _first_extension(session: Session, user_id: int | None,
                     pbx: str | None = None) -> tuple[str, tuple[str, ...]]:
    """The seller's first extension on box ``pbx`` and its devices ("" and () for nobody)."""
    if user_id is None:
        return "", ()
    found = session.exec(select(UserExtension.extension, UserExtension.devices).join(User)
                         .where(UserExtension.user_id == user_id, User.active,
                                UserExtension.pbx.is_not_distinct_from(pbx))
                         .order_by(UserExtension.id)).first()
    return (found[0], tuple(device_names(found[1]))) if found else ("", ())


def _lookup_of(session: Session, status: str, call: Call,
               pbx: str | None = None) -> CallerLookup:
    deal = session.get(Deal, call.deal_id) if call.deal_id else None
    contact = session.get(Contact, call.contact_id) if call.contact_id else None
    owner_id = deal.owner_id if deal else None
    if owner_id is None and contact is not None:
        owner_id = contact.owner_id
    extension, devices = _first_extension(session, owner_id, pbx)
    return CallerLookup(status=status, deal_id=deal.id if deal else None,
                        contact_id=contact.id if contact else None,
                        caller_name=contact.name if contact else "",
                        owner_extension=extension, owner_devices=devices)


_POPPED = core_select(Event.__table__.c.target_user_id).where(
    Event.__table__.c.linkedid == bindparam("linkedid"), Event.__table__.c.kind == events.RINGING)


def _popped_for(session: Session, linkedid: str) -> set[int | None]:
    """Whose browsers show this call's pop (None: the heads'): they hear how it goes on."""
    return set(session.connection().execute(_POPPED, {"linkedid": linkedid}).scalars())


def _caller_query():
    """One statement for what the dialplan needs about a number: up to two contacts having it
    (two is a conflict), each with its most recent open deal, the seller (the deal's, else the
    contact's) and that seller's first extension on the call's box, with its devices."""
    contacts, phones, deals = Contact.__table__, ContactPhone.__table__, Deal.__table__
    stages, extensions, users = Stage.__table__, UserExtension.__table__, User.__table__
    open_deal = (core_select(deals.c.id).select_from(deals.join(stages, stages.c.id
                                                                == deals.c.stage_id))
                 .where(deals.c.contact_id == contacts.c.id, stages.c.kind == "open")
                 .order_by(deals.c.created_at.desc(), deals.c.id.desc()).limit(1)
                 .correlate(contacts).scalar_subquery())
    deal = deals.alias("open_deal")
    seller = func.coalesce(deal.c.owner_id, contacts.c.owner_id)
    box = bindparam("pbx", type_=String(32))  # the call's box; None: the default box
    def first_extensions(column):
        return (core_select(column)
                .select_from(extensions.join(users, users.c.id == extensions.c.user_id))
                .where(extensions.c.user_id == seller, users.c.active,
                       extensions.c.pbx.is_not_distinct_from(box))
                .order_by(extensions.c.id).limit(1).scalar_subquery())
    # Whether this call is recorded already (a retry), read along: one statement a call.
    recorded = exists().where(Call.__table__.c.uniqueid == bindparam("uniqueid"))
    return (core_select(contacts.c.id, contacts.c.name, deal.c.id,
                        first_extensions(extensions.c.extension), seller,
                        first_extensions(extensions.c.devices), recorded.label("recorded"))
            .select_from(phones.join(contacts, contacts.c.id == phones.c.contact_id)
                         .outerjoin(deal, deal.c.id == open_deal))
            .where(phones.c.e164 == bindparam("e164"))
            .limit(2))


_CALLER_QUERY = _caller_query()
_CALL_RECORDED = core_select(literal_column("1")).where(
    Call.__table__.c.uniqueid == bindparam("uniqueid"))
_CALLS_MAKE_DEALS = core_select(literal_column("1")).where(
    and_(Pipeline.__table__.c.is_default, Pipeline.__table__.c.creates_deals_from_calls))


def lookup_caller(connection, *, uniqueid: str, caller: CallerNumber,
                  create_deals: bool, pbx: str | None = None) -> CallerLookup:
    """What ``record_inbound_call`` will decide, read without writing anything (on a plain
    connection or a session), so the
    dialplan gets its answer before the call is recorded (the recording follows at once).

    A new caller reads NEW with no deal yet: their contact and Unsorted deal are made by the
    recording, and the screen-pop carries the new deal's number. The owner's extension is
    the one on box ``pbx``, the call's (None: the default box): another box's is not theirs
    to dial.
    """
    if caller.kind is CallerKind.INTERNAL:
        return CallerLookup(INTERNAL)
    if caller.kind is not CallerKind.NUMBER:
        return CallerLookup(ANONYMOUS)
    if isinstance(connection, Session):
        connection = connection.connection()
    rows = connection.execute(_CALLER_QUERY, {"e164": caller.e164, "uniqueid": uniqueid,
                                              "pbx": pbx}).all()
    recorded = (rows[0].recorded if rows else
                connection.execute(_CALL_RECORDED, {"uniqueid": uniqueid}).first() is not None)
    if recorded:
        # A retry of a call already recorded: the first run's decision stands.
        with Session(bind=connection) as session:
            call = find_call(session, uniqueid)
            return _lookup_of(session, _status_of(session, call, caller), call, pbx)
    if len(rows) > 1:
        return CallerLookup(CONFLICT)
    if not rows:
        return CallerLookup(NEW)
    contact_id, name, deal_id, extension, seller, devices, _recorded = rows[0]
    owner = dict(owner_extension=extension, owner_id=seller,
                 owner_devices=tuple(device_names(devices))) if extension else {}
    if deal_id is None and create_deals and connection.execute(_CALLS_MAKE_DEALS).first():
        # Known, but nothing open: the recording opens a new deal for them.
        return CallerLookup(NEW, contact_id=contact_id, caller_name=name, **owner)
    return CallerLookup(FOUND, deal_id=deal_id, contact_id=contact_id, caller_name=name,
                        **owner)


def _call_insert(dialect: str):
    """INSERT INTO calls .. ON CONFLICT (uniqueid) DO NOTHING RETURNING id, built once per
    dialect: the call path pays for no statement building. Takes the parameters of
    ``call_backs.call_back_params`` besides the call's columns."""
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    calls_table = Call.__table__
    # A call replayed late finds its call back, if one was recorded before it.
    return (insert(calls_table).values(called_back_at=call_backs.CALL_BACK_SO_FAR)
            .on_conflict_do_nothing(index_elements=[calls_table.c.uniqueid])
            .returning(calls_table.c.id))


_CALL_INSERTS = {dialect: _call_insert(dialect) for dialect in ("postgresql", "sqlite")}
_DEAL_TOUCHED = (update(Deal.__table__).where(Deal.__table__.c.id == bindparam("deal_id"))
                 .values(last_activity_at=bindparam("at")))


def _record_known_call(session: Session, lookup: CallerLookup, *, uniqueid: str, linkedid: str,
                       caller: CallerNumber, caller_name: str | None, did: str | None,
                       now: datetime) -> None:
    """The common case, a known caller with an open deal, in a few plain statements: the
    call, the deal's last activity, the daily counts, the pops. Safe to repeat (a call
    recorded before is left as it is)."""
    # On the session's connection: the ORM layer adds only its own cost to plain statements.
    connection = session.connection()
    call_id = connection.execute(_CALL_INSERTS[connection.dialect.name], dict(
        uniqueid=uniqueid, linkedid=linkedid, direction=CallDirection.INBOUND.value,
        caller_raw=caller.raw[:80], caller_e164=caller.e164,
        caller_name=_clean_name(caller_name), did=did[:64] if did else None,
        ringing_at=now, deal_id=lookup.deal_id, contact_id=lookup.contact_id,
        **call_backs.call_back_params(lookup.deal_id, now))).scalar()
    if call_id is None:
        return  # a repeat: the first run recorded it
    connection.execute(_DEAL_TOUCHED, {"deal_id": lookup.deal_id, "at": now})
    report_days.record_calls(session, [report_days.CalledDeal(
        lookup.deal_id, now, CallDirection.INBOUND.value, call_id)])
    _pop_ringing(session, linkedid, lookup.owner_id, lookup.deal_id, now, {
        "uniqueid": uniqueid, "linkedid": linkedid, "status": lookup.status,
        "caller": caller.e164, "caller_name": lookup.caller_name, "deal_id": lookup.deal_id,
        "contact_id": lookup.contact_id, "did": did[:64] if did else None})


def _pop_ringing(session: Session, linkedid: str, owner_id: int | None, deal_id: int | None,
                 now: datetime, payload: dict) -> None:
    """Tell the heads and the owner's browser that the call rings. The AMI listener may have
    popped the call already (the dialplan rings the phones as soon as the lookup answered,
    maybe before this is written): one pop per browser and call."""
    events.serialize_pops(session, linkedid)
    shown = _popped_for(session, linkedid)
    rows = [events.event_row(events.RINGING, target, payload=payload, deal_id=deal_id,
                             linkedid=linkedid, now=now)
            for target in [None] + ([owner_id] if owner_id else []) if target not in shown]
    events.emit_rows(session, rows)


def find_call(session: Session, uniqueid: str) -> Call | None:
    return session.exec(select(Call).where(Call.uniqueid == uniqueid)).first()


def record_inbound_call(session: Session, *, uniqueid: str, linkedid: str,
                        caller: CallerNumber, caller_name: str | None, did: str | None,
                        create_deals: bool, region: str, now: datetime | None = None,
                        looked_up: CallerLookup | None = None,
                        pbx: str | None = None) -> CallerLookup:
    """An inbound call rings: find or create the caller's deal, record the call, and tell
    the browsers. A repeat of the same uniqueid returns what the first run decided.
    ``looked_up``: what ``lookup_caller`` told the dialplan a moment ago, not read again;
    ``pbx``: the box the call rings on (None: the default box)."""
    now = now or utcnow()
    linkedid = linkedid or uniqueid
    if caller.kind is CallerKind.NUMBER:
        lookup = looked_up or lookup_caller(session, uniqueid=uniqueid, caller=caller,
                                            create_deals=create_deals, pbx=pbx)
        if lookup.status == FOUND and lookup.deal_id is not None:
            _record_known_call(session, lookup, uniqueid=uniqueid, linkedid=linkedid,
                               caller=caller, caller_name=caller_name, did=did, now=now)
            return lookup
    existing = find_call(session, uniqueid)
    status = NEW
    if existing is not None:
        return _lookup_of(session, _status_of(session, existing, caller), existing, pbx)
    call = Call(uniqueid=uniqueid, linkedid=linkedid or uniqueid,
                direction=CallDirection.INBOUND.value, caller_raw=caller.raw[:80],
                caller_e164=caller.e164, caller_name=_clean_name(caller_name),
                did=did[:64] if did else None, ringing_at=now)
    if caller.kind is CallerKind.INTERNAL:
        call.direction = CallDirection.INTERNAL.value
        status = INTERNAL
    elif caller.kind is not CallerKind.NUMBER:
        status = ANONYMOUS
    else:
        try:
            found = deal_for_caller(session, PBX, e164=caller.e164,
                                    caller_name=call.caller_name, region=region,
                                    create=create_deals, now=now)
        except NumberConflict:
            # A shared number (a switchboard): attach nothing rather than guess.
            status = CONFLICT
        else:
            call.contact_id = found.contact_id
            call.deal_id = found.deal.id if found.deal else None
            # NEW: a caller we did not know, whether or not a deal was made for them.
            status = FOUND if found.contact_id and not found.created else NEW
    if call.deal_id is not None:
        call.called_back_at = call_backs.call_back_so_far(session, deal_id=call.deal_id, at=now)
    session.add(call)
    session.flush()
    lookup = _lookup_of(session, status, call, pbx)
    if call.deal_id is not None:
        session.get(Deal, call.deal_id).last_activity_at = now
        report_days.record_call(session, deal_id=call.deal_id, at=now, direction=call.direction)
    owner = (user_for_extension(session, lookup.owner_extension, pbx)
             if lookup.owner_extension else None)
    _pop_ringing(session, call.linkedid, owner.id if owner else None, call.deal_id, now,
                 _call_payload(call, lookup))
    return lookup


def _status_of(session: Session, call: Call, caller: CallerNumber) -> str:
    if call.direction == CallDirection.INTERNAL.value:
        return INTERNAL
    if caller.kind is not CallerKind.NUMBER:
        return ANONYMOUS
    if call.contact_id is None:
        shared = len(contacts_with_number(session, caller.e164)) > 1
        return CONFLICT if shared else NEW
    # NEW when the deal was made for this call: it came from a call, and this is its first.
    if call.deal_id is not None:
        deal = session.get(Deal, call.deal_id)
        first = session.exec(select(Call.id).where(Call.deal_id == call.deal_id)
                             .order_by(Call.id)).first()
        if deal.source == DealSource.CALL.value and first == call.id:
            return NEW
    return FOUND


def _clean_name(name: str | None) -> str | None:
    name = " ".join((name or "").split())[:200]
    return None if not name or name.lower() in {"unknown", "anonymous", "<unknown>"} else name


def _call_payload(call: Call, lookup: CallerLookup) -> dict:
    return {"uniqueid": call.uniqueid, "linkedid": call.linkedid, "status": lookup.status,
            "caller": call.caller_e164 or call.caller_raw, "caller_name": lookup.caller_name
            or call.caller_name or "", "deal_id": lookup.deal_id,
            "contact_id": lookup.contact_id, "did": call.did}


def record_answer(session: Session, *, uniqueid: str, extension: str, device: str = "",
                  pbx: str | None = None, now: datetime | None = None) -> Call | None:
    """The phone at ``extension`` of box ``pbx`` (None: the default box) answered the
    inbound call ``uniqueid``.

    The seller becomes the owner of an Unsorted deal (atomically: of two phones answering a
    ring group at once, one owner); a deal with an owner keeps it. ``extension`` may name one
    of an extension's devices (``101b``, read from the answering channel): it answers for
    that extension's seller, and the call keeps the device. A call not recorded yet raises
    ``CallNotRecorded`` (the request is spooled and replayed).
    """
    now = now or utcnow()
    user = user_for_extension(session, extension, pbx)
    if user is None and (owning := device_extensions(session, pbx).get(extension)):
        device, extension = extension, owning
        user = user_for_extension(session, extension, pbx)
    if user is None:
        # Not a seller's phone (a ring group's Local channel, a queue): the answer that counts
        # is the device's, which the AMI listener or Dial's DIALSTATUS reports.
        return find_call(session, uniqueid)
    call = _first_answer(session, uniqueid, user, extension, device, now=now)
    if call is None:
        found = find_call(session, uniqueid)
        if found is None:
            raise CallNotRecorded(uniqueid)
        if found.answered_at is None and found.direction != CallDirection.OUTBOUND.value:
            # Recorded (by another node) between the two statements: answer it now.
            call = _first_answer(session, uniqueid, user, extension, device, now=now)
        if call is None:
            return _answered_before(session, found, user, extension, device, now=now)
    _take_unsorted(session, call, user, now=now)
    if call.deal_id is not None and call.direction == CallDirection.INBOUND.value:
        # The customer is reached: the callback their missed calls left is done.
        tasks.close_callback(session, call, now=now)
    _tell_answer(session, call, user, extension, now=now)
    return call


def _tell_answer(session: Session, call: Call, user: User, extension: str, *,
                 now: datetime) -> None:
    """The ``answered`` event: the pops learn who answered, the robots' triggers that a call
    was answered."""
    events.emit_to_users(session, events.ANSWERED,
                         _popped_for(session, call.linkedid) | {user.id},
                         payload={"uniqueid": call.uniqueid, "linkedid": call.linkedid,
                                  "extension": extension, "user_id": user.id,
                                  "deal_id": call.deal_id},
                         deal_id=call.deal_id, linkedid=call.linkedid, now=now)


class CallNotRecorded(LookupError):
    """The call is not in the database (yet): its lookup was answered by another FastAGI node
    that spooled its recording, or never reached the CRM. Raised so that the request waits in
    the spool and is replayed once the call is there."""


def _first_answer(session: Session, uniqueid: str, user: User, extension: str, device: str,
                  *, now: datetime) -> Call | None:
    """The call's answer, if it has none yet. Conditional, so that of two phones answering at
    once (PostgreSQL runs both transactions side by side) the first answer stays the call's,
    as the deal's owner does. Never a call out: the seller's own phone answering is not the
    customer answering."""
    return _updated_call(session, Call.uniqueid == uniqueid, Call.answered_at.is_(None),
                         Call.direction != CallDirection.OUTBOUND.value,
                         answered_at=now, answered_exten=extension[:32],
                         answered_device=device[:40] if device and device != extension
                         else None, answered_by_id=user.id)


def _answered_before(session: Session, call: Call, user: User, extension: str, device: str,
                     *, now: datetime) -> Call:
    """An answer to a call answered already: the first answer stays; but a call a hangup
    closed as answered before this answer came (handled on another node while this one
    waited in a spool) learns who answered, and its Unsorted deal is taken."""
    late = _updated_call(session, Call.id == call.id, Call.answered_by_id.is_(None),
                         Call.answered_at.is_not(None), Call.ended_at.is_not(None),
                         Call.direction == CallDirection.INBOUND.value,
                         answered_exten=extension[:32], answered_by_id=user.id,
                         answered_device=device[:40] if device and device != extension
                         else None)
    if late is None:
        return call
    _take_unsorted(session, late, user, now=now)
    _tell_answer(session, late, user, extension, now=now)
    return late


def _take_unsorted(session: Session, call: Call, user: User, *, now: datetime) -> None:
    """The seller who answered takes the call's deal if it waits in Unsorted."""
    if call.deal_id is None:
        return
    deal, stage = load_deal(session, call.deal_id)
    if stage.is_unsorted and deal.owner_id is None:
        try:
            take_deal(session, Actor.of(user), deal.id, now=now)
        except (AlreadyTaken, Conflict):
            pass  # someone else's phone won the race; the deal keeps that owner


def record_hangup(session: Session, *, uniqueid: str, dial_status: str | None,
                  hangup_cause: int | None, answered_seconds: int | None = None,
                  caller: CallerNumber | None = None, linkedid: str | None = None,
                  caller_name: str | None = None, create_deals: bool = False,
                  region: str = "", pbx: str | None = None,
                  now: datetime | None = None) -> Call | None:
    """The call ended: set its disposition, put it on the deal's timeline, and for a missed
    or abandoned inbound call leave a callback task for the owner (or the Unsorted queue).
    ``answered_seconds`` (Dial's ANSWEREDTIME) is the talk time the timeline shows.

    An inbound call was answered when an answer was recorded (the ``answered`` hook, the AMI
    listener): after ``Queue()`` DIALSTATUS is unset whether a member answered or the caller
    gave up, so an empty ``dial_status`` says nothing more than "not answered", which for
    an inbound call is the caller hanging up first (abandoned). A call out is answered only
    when the customer's leg was (DIALSTATUS ANSWER), never because the seller's phone was."""
    now = now or utcnow()
    call = find_call(session, uniqueid)
    if call is None:
        if caller is None:
            return None
        # The lookup never reached us (the CRM was down), or not yet: with AGIEXITONHANGUP a
        # caller who hangs up during the lookup ends its AGI at once, and this handler's
        # request can overtake it. Record the call as the lookup does (contact, deal), so a
        # caller who gave up is not lost; a late lookup then finds the call recorded.
        record_inbound_call(session, uniqueid=uniqueid, linkedid=linkedid or uniqueid,
                            caller=caller, caller_name=caller_name, did=None,
                            create_deals=create_deals, region=region, now=now, pbx=pbx)
        call = find_call(session, uniqueid)
    if call.ended_at is not None:
        return call
    status = (dial_status or "").strip().upper()
    answered_at = call.answered_at
    # An answer recorded as the phone picked up (``record_answer``) closed the callback then.
    reached_before = (call.answered_at is not None
                      and call.direction == CallDirection.INBOUND.value)
    if answered_at is None and status == "ANSWER" and answered_seconds is not None:
        # No answered hook ran (an outbound call): Dial's ANSWEREDTIME tells the talk time.
        answered_at = now - timedelta(seconds=max(0, answered_seconds))
    disposition = "answered" if answered_at else _DISPOSITIONS.get(status, "failed")
    # Conditional, so that the hangup hook and the AMI listener closing the same call at the
    # same moment close it once.
    closed = _updated_call(session, Call.id == call.id, Call.ended_at.is_(None),
                           disposition=disposition, ended_at=now, hangup_cause=hangup_cause,
                           answered_at=answered_at)
    if closed is None:
        session.refresh(call)
        return call
    if call.deal_id is not None:
        _put_on_timeline(session, call, talk_seconds=answered_seconds
                         if disposition == "answered" else None)
        if is_missed_inbound(call.direction, disposition):
            tasks.note_missed_call(session, call, now=now)
            report_days.record_missed_call(session, deal_id=call.deal_id, at=call.ringing_at)
        elif disposition == "answered" and not reached_before:
            # Answered either way (a call back, click-to-call): the customer was reached.
            tasks.close_callback(session, call, now=now)
        if disposition == "answered" and call.direction != CallDirection.OUTBOUND.value:
            # The call back of the deal's earlier calls (a call out is one from the start).
            call_backs.called_back(session, deal_id=call.deal_id, at=call.ringing_at)
    events.emit_to_users(session, events.CALL_ENDED, _popped_for(session, call.linkedid)
                         | {call.answered_by_id},
                         payload={"uniqueid": call.uniqueid, "linkedid": call.linkedid,
                                  "disposition": disposition, "deal_id": call.deal_id},
                         deal_id=call.deal_id, linkedid=call.linkedid, now=now)
    return call


def _updated_call(session: Session, *conditions, **values) -> Call | None:
    """Set ``values`` on the call matching ``conditions``, in one statement that also reads
    it back; None if no call matched (the condition lost a race, or no such call)."""
    return session.execute(update(Call).where(*conditions).values(**values).returning(Call),
                           execution_options={"populate_existing": True}).scalars().first()


def call_words(call: Call, *, talk_seconds: int = 0, hold_seconds: int | None = None) -> Words:
    """A closed call's timeline line: direction, outcome, number, and the talk; for a queue
    call nobody answered, how long the caller waited in the queue."""
    number = (call.caller_e164 or call.dialed_raw or call.caller_raw
              or Phrase("unknown number"))
    said = Words(_CALL_LINE[call.direction], outcome=OUTCOMES.get(call.disposition,
                                                                  call.disposition),
                 number=number)
    if talk_seconds:
        said = Words("%(call)s, %(seconds)s s", call=said, seconds=int(talk_seconds))
    if hold_seconds is not None and call.disposition != Disposition.ANSWERED.value:
        said = Words("%(call)s, after %(seconds)s s in the queue", call=said,
                     seconds=int(hold_seconds))
    return said


def _put_on_timeline(session: Session, call: Call, *, talk_seconds: int | None = None) -> None:
    talk = (call.ended_at - call.answered_at).total_seconds() if call.answered_at else 0
    if talk_seconds is not None:
        # Asterisk's own count, the one the CDR bills; the hooks' arrival times only
        # approximate it (and a replayed hook's, by the replay's delay at worst).
        talk = max(0, talk_seconds)
    said = call_words(call, talk_seconds=int(talk), hold_seconds=call.hold_seconds)
    timeline(session, PBX, call.deal_id, TimelineKind.CALL, say=said, call_id=call.id,
             at=call.ended_at, data={"direction": call.direction,
                                     "disposition": call.disposition,
                                     "talk_seconds": int(talk),
                                     "answered_exten": call.answered_exten})
    session.connection().execute(_DEAL_TOUCHED, {"deal_id": call.deal_id, "at": call.ended_at})


def record_outbound_call(session: Session, *, uniqueid: str, linkedid: str, extension: str,
                         dialed: CallerNumber, clicked_deal_id: int | None = None,
                         pbx: str | None = None, now: datetime | None = None) -> Call:
    """A seller's phone (``extension`` of box ``pbx``; None: the default box) dials out: log
    the call on the deal the seller clicked to call, or else on the open deal of the dialed
    number."""
    now = now or utcnow()
    existing = find_call(session, uniqueid)
    if existing is not None:
        return existing
    user = user_for_extension(session, extension, pbx)
    call = Call(uniqueid=uniqueid, linkedid=linkedid or uniqueid,
                direction=CallDirection.OUTBOUND.value, caller_raw=extension[:80],
                dialed_raw=dialed.raw[:80], caller_e164=dialed.e164, ringing_at=now,
                answered_exten=extension[:32], answered_by_id=user.id if user else None)
    clicked = session.get(Deal, clicked_deal_id) if clicked_deal_id else None
    if clicked is not None:
        call.deal_id, call.contact_id = clicked.id, clicked.contact_id
    elif dialed.kind is CallerKind.NUMBER:
        try:
            contact = find_contact_by_number(session, dialed.e164)
        except NumberConflict:
            contact = None
        if contact is not None:
            call.contact_id = contact.id
            deal = open_deal_of_contact(session, contact.id)
            call.deal_id = deal.id if deal else None
    session.add(call)
    session.flush()
    if call.deal_id is not None:
        report_days.record_call(session, deal_id=call.deal_id, at=now, direction=call.direction)
        call_backs.called_back(session, deal_id=call.deal_id, at=now)
    return call
