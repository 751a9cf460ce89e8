"""How a call went, leg by leg, for the deal's timeline and the contact's call list.

A call that went through a queue, rang more than one seller (a ring group, a queue's members,
the seller it was transferred to) or was answered on a seller's second device is told in short
parts: the queue and the caller's wait there, then each leg in the order rung: the seller's
name (the extension, when it is nobody's), the device when it is not the extension itself, how
long it rang and how it ended, and how long each seller who answered talked (a transferred
call's talk is split between them). A call that rang one phone of one seller says nothing its
own line does not: it has no story, and its line shows as it always did.

``deal_card`` and ``contact_card`` call ``stories_of`` with the calls of their page: one query
reads the legs of them all. A story's parts are ``Words``, said in the reader's language by
the page (``webui/templates/_call_story.html``). Never writes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlmodel import Session, select

from ..errors import Phrase
from ..models import Call, CallLeg, User
from ..people.language import Words


@dataclass(frozen=True)
class CallStory:
    """The queue and the caller's wait there (None: no queue), then each leg, in order."""

    queue: Words | None
    legs: tuple[Words, ...]


def stories_of(session: Session, calls: Iterable[Call]) -> dict[int, CallStory]:
    """Each call's story (``call_story``), by call id; calls with nothing more to tell are
    left out."""
    calls = {call.id: call for call in calls}
    if not calls:
        return {}
    legs: dict[int, list[tuple[CallLeg, str | None]]] = {call_id: [] for call_id in calls}
    for leg, name in session.exec(
            select(CallLeg, User.name).outerjoin(User, User.id == CallLeg.user_id)
            .where(CallLeg.call_id.in_(list(calls)))
            .order_by(CallLeg.call_id, CallLeg.position)):
        legs[leg.call_id].append((leg, name))
    stories = {call_id: call_story(call, legs[call_id]) for call_id, call in calls.items()}
    return {call_id: story for call_id, story in stories.items() if story is not None}


def call_story(call: Call, legs: Sequence[tuple[CallLeg, str | None]]) -> CallStory | None:
    """The call's queue and legs, each seller named by ``legs``' names; None for a call
    that rang one seller's own phone and no queue."""
    queued = bool(call.queue) or call.hold_seconds is not None
    if not queued and len(legs) <= 1 and not any(_other_device(leg) for leg, _ in legs):
        return None
    queue = None
    if queued:
        name = call.queue or "?"
        queue = (Words("Queue %(queue)s", queue=name) if call.hold_seconds is None
                 else Words("Queue %(queue)s · waited %(wait)s", queue=name,
                            wait=duration(call.hold_seconds)))
    return CallStory(queue, tuple(leg_words(leg, name) for leg, name in legs))


def leg_words(leg: CallLeg, name: str | None) -> Words:
    """"Ana on 101b: answered after 2 s, talked 1 min 5 s"; "ext 600: rang 15 s, no
    answer"."""
    who = name or Words("ext %(extension)s", extension=leg.extension)
    if _other_device(leg):
        who = Words("%(seller)s on %(device)s", seller=who, device=leg.device)
    return Words("%(seller)s: %(what)s", seller=who, what=_how_it_went(leg))


def duration(seconds: float) -> Words:
    """Whole seconds as a reader takes them in: "45 s", "2 min 5 s", "3 min"."""
    minutes, rest = divmod(max(0, round(seconds)), 60)
    if not minutes:
        return Words("%(seconds)s s", seconds=rest)
    if not rest:
        return Words("%(minutes)s min", minutes=minutes)
    return Words("%(minutes)s min %(seconds)s s", minutes=minutes, seconds=rest)


def _how_it_went(leg: CallLeg) -> Words | Phrase:
    rang = None if leg.ring_seconds is None else duration(leg.ring_seconds)
    if leg.outcome == "answered":
        answer = Phrase("answered") if rang is None else Words("answered after %(ring)s",
                                                                ring=rang)
        if leg.talk_seconds is None:
            return answer
        return Words("%(answer)s, talked %(talk)s", answer=answer,
                     talk=duration(leg.talk_seconds))
    if leg.outcome == "busy":
        return Phrase("busy")
    if leg.outcome == "noanswer":
        return Phrase("no answer") if rang is None else Words("rang %(ring)s, no answer",
                                                              ring=rang)
    # Cancelled (someone else answered, or the caller gave up: the call's line says which)
    # or not known: the ring is all there is to tell.
    return Phrase("rang") if rang is None else Words("rang %(ring)s", ring=rang)


def _other_device(leg: CallLeg) -> bool:
    """Whether the leg rang a device of the seller's other than the extension itself (a
    seller with a desk phone and a softphone)."""
    return bool(leg.device) and leg.device != leg.extension
