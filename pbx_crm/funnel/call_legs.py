"""A call's legs: each seller's phone it rang, how each leg ended, who talked how long.

The AMI listener calls ``record_call_end`` when the call tracker says a call is over, once
the call record is closed (by the hangup hook, or by the listener when no hook did). It
writes the call's legs all at once, replacing any written before (a replayed end writes them
again, never twice); each answered leg gets its seller's share of the talk (a transferred
call is split between the sellers who talked). A queue call keeps its queue and the caller's
wait; its timeline line says how long the caller waited when nobody answered, and the talk as
the PBX counted it when someone did (Queue sets no ANSWEREDTIME for the hangup hook).

A leg is given as the tracker's ``Leg`` reads (``extension``, ``device``, ``outcome``,
``ring_seconds``, ``answered``); this module imports nothing of the telephony wing. Never
commits.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy import delete, update
from sqlmodel import Session, select

from ..enums import TimelineKind
from ..models import Call, CallLeg, TimelineEntry
from ..models.calls import LEG_OUTCOMES
from ..people.users import user_for_extension
from .calls import call_words


def record_call_end(session: Session, call: Call, *, legs: Sequence = (),
                    talk_by: Iterable[tuple[str, int]] = (), queue: str = "",
                    hold_seconds: int | None = None, talk_seconds: int | None = None,
                    pbx: str | None = None) -> list[CallLeg]:
    """Write ``call``'s legs (replacing any), its queue and the caller's wait there;
    ``talk_seconds`` is the PBX's count of the whole talk, if it gave one; the legs'
    extensions are box ``pbx``'s (None: the default box)."""
    if not legs and not queue and hold_seconds is None:
        return []  # nothing seen (a call first met in a resync): what was written stays
    session.execute(delete(CallLeg).where(CallLeg.call_id == call.id))
    shares = talk_shares(legs, talk_by)
    sellers: dict[str, int | None] = {}
    rows = []
    for position, leg in enumerate(legs):
        if leg.extension not in sellers:
            user = user_for_extension(session, leg.extension, pbx)
            sellers[leg.extension] = user.id if user else None
        rows.append(CallLeg(
            call_id=call.id, position=position, extension=leg.extension[:32],
            user_id=sellers[leg.extension], device=(leg.device or "")[:40],
            outcome=leg.outcome if leg.outcome in LEG_OUTCOMES else "unknown",
            ring_seconds=leg.ring_seconds, talk_seconds=shares.get(position)))
    session.add_all(rows)
    if queue or hold_seconds is not None:
        session.execute(update(Call).where(Call.id == call.id).values(
            queue=queue[:64] or call.queue, hold_seconds=hold_seconds),
            execution_options={"synchronize_session": False})
        session.refresh(call)
        _complete_the_line(session, call, talk_seconds)
    session.flush()
    return rows


def talk_shares(legs: Sequence, talk_by: Iterable[tuple[str, int]]) -> dict[int, int]:
    """Each seller's talk (``talk_by``, in the order they talked) on their answered leg, by
    position: the first of that seller's answered legs not given a share yet, else their
    last answered leg (a seller who talked twice, the caller handed back to them)."""
    shares: dict[int, int] = {}
    for extension, seconds in talk_by:
        answered = [position for position, leg in enumerate(legs)
                    if leg.extension == extension and leg.answered]
        if not answered:
            continue
        position = next((p for p in answered if p not in shares), answered[-1])
        shares[position] = shares.get(position, 0) + max(0, int(seconds))
    return shares


def legs_of(session: Session, call_id: int) -> list[CallLeg]:
    return list(session.exec(select(CallLeg).where(CallLeg.call_id == call_id)
                             .order_by(CallLeg.position)))


def _complete_the_line(session: Session, call: Call, talk_seconds: int | None) -> None:
    """The queue call's timeline line learns the caller's wait and the PBX's count of the
    talk (the hangup hook wrote it before either was known: only the AMI stream tells)."""
    if call.deal_id is None or call.ended_at is None:
        return  # no line (yet): the hangup, when it comes, writes it with the wait
    entry = next((entry for entry in session.exec(
        select(TimelineEntry).where(TimelineEntry.call_id == call.id,
                                    TimelineEntry.kind == TimelineKind.CALL.value)
        .order_by(TimelineEntry.id))
        if (entry.data or {}).get("disposition")), None)
    if entry is None:
        return
    talk = entry.data.get("talk_seconds") or 0
    if call.answered_at is not None and talk_seconds is not None:
        talk = max(0, int(talk_seconds))
    said = call_words(call, talk_seconds=talk, hold_seconds=call.hold_seconds)
    entry.body = said.english
    entry.data = {**entry.data, "say": said.kept(), "talk_seconds": talk,
                  "queue": call.queue, "hold_seconds": call.hold_seconds}
    session.add(entry)
