"""Deals through the funnel: create, move, take, assign, close, reopen, note.

Plain functions taking a session and an ``Actor``; the caller owns the transaction. Every
change that can race (two sellers dragging the same card, two sellers taking the same Unsorted
deal) is one conditional UPDATE: on the version number for moves, on "still nobody's" for
takes. The loser's UPDATE changes no row and gets a typed refusal with the current state.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text, update
from sqlmodel import Session, select

from . import pipelines, stage_totals
from ..reporting import days as report_days
from .contacts import (
    call_deal_title, create_contact, find_contact_by_number, is_named, phones_of, use_contact,
)
from ..enums import DealSource, Priority, StageKind, TimelineKind
from ..errors import AlreadyTaken, Conflict, NotFound, Phrase, StaleVersion, ValidationError
from ..rules.funnel import (
    Actor, check_move, clean_currency, check_owner_for_stage, ensure_can_change_deal,
    ensure_can_read_deal, ensure_head, ensure_open,
)
from .journal import audit, timeline
from ..models import Deal, Pipeline, Stage, StageHistory, User, utcnow
from ..people.language import Words
from ..people.users import get_active_user

MAX_AMOUNT_MINOR = 10**15


def _clean_title(title: str) -> str:
    title = " ".join((title or "").split())
    if not title:
        raise ValidationError("A deal needs a title.", field="title")
    if len(title) > 200:
        raise ValidationError("A deal title is at most 200 characters.", field="title")
    return title


def _clean_amount(amount_minor) -> int:
    if isinstance(amount_minor, bool) or not isinstance(amount_minor, int):
        raise ValidationError("The amount must be a whole number of minor units.",
                              field="amount")
    if not 0 <= amount_minor < MAX_AMOUNT_MINOR:
        raise ValidationError("The amount must be zero or more, and less than 10^15 minor "
                              "units.", field="amount")
    return amount_minor


def _clean_priority(priority) -> int:
    if isinstance(priority, bool) or not isinstance(priority, int | str):
        raise ValidationError("Priority is 0 (low), 1 (normal) or 2 (high).", field="priority")
    try:
        return Priority(int(priority)).value
    except (TypeError, ValueError):
        raise ValidationError("Priority is 0 (low), 1 (normal) or 2 (high).",
                              field="priority") from None


def _record_move(session: Session, actor: Actor, deal: Deal, from_stage: Stage | None,
                 to_stage: Stage, *, from_entered_at: datetime | None, at: datetime,
                 reason: str | None = None, note: str | None = None) -> None:
    row = StageHistory(deal_id=deal.id, pipeline_id=deal.pipeline_id,
                       from_stage_id=from_stage.id if from_stage else None,
                       to_stage_id=to_stage.id, from_entered_at=from_entered_at,
                       moved_at=at, moved_by_id=actor.user_id)
    session.add(row)
    report_days.record_move(session, deal, row)
    if from_stage is None:
        timeline(session, actor, deal.id, TimelineKind.CREATED, at=at,
                 body=f"Deal created in {to_stage.name}", data={"stage_id": to_stage.id},
                 say=Words("Deal created in %(stage)s",
                           stage=pipelines.stage_word(to_stage)))
        return
    remark = reason or note
    body = f"{from_stage.name} → {to_stage.name}" + (f": {remark}" if remark else "")
    stages = {"from_stage": pipelines.stage_word(from_stage),
              "to_stage": pipelines.stage_word(to_stage)}
    said = (Words("%(from_stage)s → %(to_stage)s: %(remark)s", remark=remark, **stages)
            if remark else Words("%(from_stage)s → %(to_stage)s", **stages))
    timeline(session, actor, deal.id, TimelineKind.STAGE_MOVE, body=body, at=at,
             data={"from_stage_id": from_stage.id, "to_stage_id": to_stage.id}, say=said)
    audit(session, actor, "deal", deal.id, "move",
          {"from": from_stage.id, "to": to_stage.id, "lost_reason": reason}, at=at)


# --- reading ------------------------------------------------------------------------------


def load_deal(session: Session, deal_id: int) -> tuple[Deal, Stage]:
    row = session.exec(select(Deal, Stage).join(Stage, Stage.id == Deal.stage_id)
                       .where(Deal.id == deal_id)).first()
    if row is None:
        raise NotFound("No deal #%(deal_id)s.", deal_id=deal_id)
    return row


def get_deal(session: Session, actor: Actor, deal_id: int) -> Deal:
    """The deal, if ``actor`` may see it (403 for another seller's deal)."""
    deal, stage = load_deal(session, deal_id)
    ensure_can_read_deal(actor, deal, stage)
    return deal


def history_of(session: Session, actor: Actor, deal_id: int) -> list[StageHistory]:
    get_deal(session, actor, deal_id)
    return list(session.exec(select(StageHistory).where(StageHistory.deal_id == deal_id)
                             .order_by(StageHistory.moved_at, StageHistory.id)))


# --- creating -----------------------------------------------------------------------------


def create_deal(session: Session, actor: Actor, *, title: str, pipeline_id: int | None = None,
                stage_id: int | None = None, contact_id: int | None = None,
                amount_minor: int = 0, currency: str | None = None,
                owner_id: int | None = None, priority: int = Priority.NORMAL.value,
                source: str = DealSource.MANUAL.value, now: datetime | None = None) -> Deal:
    """A new deal. A person's deal is theirs and starts in the first working stage; a deal
    the PBX makes (no user) waits in Unsorted for whoever picks up the phone."""
    now = now or utcnow()
    pipeline = pipelines.get_pipeline(session, pipeline_id)
    if owner_id is None and actor.user_id is not None:
        owner_id = actor.user_id
    if owner_id is not None and owner_id != actor.user_id:
        ensure_head(actor, Phrase("create deals for another seller"))
    if stage_id is None:
        stage = (pipelines.first_work_stage(session, pipeline.id) if owner_id is not None
                 else pipelines.unsorted_stage(session, pipeline.id))
    else:
        stage = pipelines.get_stage(session, stage_id)
        if stage.pipeline_id != pipeline.id:
            raise ValidationError("Stage “%(stage)s” belongs to another pipeline.",
                                  stage=stage.name, field="stage")
    if stage.kind != StageKind.OPEN.value:
        raise ValidationError("A new deal starts in a working stage, not in an outcome.",
                              field="stage")
    if stage.is_unsorted and owner_id is not None:
        raise ValidationError("Unsorted holds deals nobody owns yet; pick a working stage.",
                              field="stage")
    check_owner_for_stage(owner_id, stage)
    if owner_id is not None:
        get_active_user(session, owner_id)
    if contact_id is not None:
        use_contact(session, actor, contact_id)
    if source not in {s.value for s in DealSource}:
        raise ValidationError("A deal's source is manual, call or popup.", field="source")
    deal = Deal(pipeline_id=pipeline.id, stage_id=stage.id, title=_clean_title(title),
                amount_minor=_clean_amount(amount_minor),
                currency=clean_currency(currency or pipeline.currency), contact_id=contact_id,
                owner_id=owner_id, priority=_clean_priority(priority), source=source,
                created_by_id=actor.user_id, created_at=now, updated_at=now,
                stage_entered_at=now, last_activity_at=now)
    session.add(deal)
    session.flush()
    stage_totals.deal_added(session, deal)
    _record_move(session, actor, deal, None, stage, from_entered_at=None, at=now)
    audit(session, actor, "deal", deal.id, "create",
          {"title": deal.title, "stage": stage.id, "owner": owner_id, "source": source}, at=now)
    return deal


# --- changing -----------------------------------------------------------------------------


def _stale(session: Session, deal_id: int) -> StaleVersion:
    deal, stage = load_deal(session, deal_id)
    # The session may hold the deal as it was read before the race was lost: read it again.
    session.refresh(deal)
    return StaleVersion("“%(title)s” was changed by someone else meanwhile: it is now in "
                        "“%(stage)s”. Look at it again and try once more.", title=deal.title,
                        stage=stage.name)


def _apply(session: Session, deal: Deal, expected_version: int | None, **values) -> Deal:
    """One conditional UPDATE on the deal's version; refuse if another change came first."""
    version = deal.version if expected_version is None else expected_version
    # Where the deal counted on the board: as read, if the UPDATE below matches its version.
    counted_before = stage_totals.counted(deal)
    result = session.exec(update(Deal).where(Deal.id == deal.id, Deal.version == version)
                          .values(version=Deal.version + 1, **values)
                          .execution_options(synchronize_session=False))
    if result.rowcount != 1:
        raise _stale(session, deal.id)
    session.refresh(deal)
    stage_totals.deal_changed(session, counted_before, deal)
    return deal


def move_deal(session: Session, actor: Actor, deal_id: int, *, to_stage_id: int,
              expected_version: int | None, lost_reason: str | None = None,
              now: datetime | None = None) -> Deal:
    """Move a card to another column. ``expected_version`` is the version the user saw;
    None (robots, the PBX) means "whatever it is now"."""
    now = now or utcnow()
    deal, from_stage = load_deal(session, deal_id)
    ensure_can_change_deal(actor, deal, from_stage)
    if expected_version is not None and deal.version != expected_version:
        raise _stale(session, deal_id)
    to_stage = pipelines.get_stage(session, to_stage_id)
    reason = check_move(deal, from_stage, to_stage, lost_reason=lost_reason)
    if to_stage.id == from_stage.id:
        return deal
    if deal.owner_id is None and not to_stage.is_unsorted:
        # Dragging a card out of Unsorted takes it, for a seller; a head assigns instead.
        if actor.role != "seller":
            raise ValidationError("Assign this Unsorted deal to a seller before moving it.",
                                  field="owner")
        deal = take_deal(session, actor, deal_id, now=now)
        if deal.stage_id == to_stage.id:
            return deal
        from_stage = pipelines.get_stage(session, deal.stage_id)
        expected_version = deal.version
    owner_id = deal.owner_id
    closing = to_stage.kind != StageKind.OPEN.value
    entered_at = deal.stage_entered_at
    _apply(session, deal, expected_version, stage_id=to_stage.id, stage_entered_at=now,
           updated_at=now, last_activity_at=now, owner_id=owner_id,
           closed_at=now if closing else None, lost_reason=reason)
    _record_move(session, actor, deal, from_stage, to_stage, from_entered_at=entered_at,
                 at=now, reason=reason)
    return deal


def take_deal(session: Session, actor: Actor, deal_id: int, *,
              now: datetime | None = None) -> Deal:
    """A seller takes an Unsorted deal: they own it and it moves to the first working stage.

    Atomic: of two sellers taking the same deal at once, exactly one wins; the other gets
    ``AlreadyTaken`` naming the winner.
    """
    if actor.user_id is None:
        raise ValidationError("Only a user can take a deal.", field="owner")
    return _claim(session, actor, deal_id, owner_id=actor.user_id, now=now, action="take")


def _claim(session: Session, actor: Actor, deal_id: int, *, owner_id: int,
           now: datetime | None, action: str) -> Deal:
    now = now or utcnow()
    deal, unsorted = load_deal(session, deal_id)
    # Before the read check: the loser of a race is told who won, not that the deal (now the
    # winner's) is out of sight.
    if not unsorted.is_unsorted or deal.owner_id is not None:
        raise _taken(session, deal)
    ensure_can_read_deal(actor, deal, unsorted)
    get_active_user(session, owner_id)
    target = pipelines.first_work_stage(session, deal.pipeline_id)
    entered_at = deal.stage_entered_at
    result = session.exec(
        update(Deal).where(Deal.id == deal_id, Deal.owner_id.is_(None),
                           Deal.stage_id == unsorted.id)
        .values(owner_id=owner_id, stage_id=target.id, stage_entered_at=now, updated_at=now,
                last_activity_at=now, version=Deal.version + 1)
        .execution_options(synchronize_session=False))
    if result.rowcount != 1:
        session.refresh(deal)
        raise _taken(session, deal)
    session.refresh(deal)
    stage_totals.deal_changed(session, stage_totals.Counted(deal.pipeline_id, unsorted.id, None,
                                                            deal.amount_minor), deal)
    report_days.deal_changed(session, deal.id, owner_before=None, owner_after=owner_id,
                             amount_before=deal.amount_minor, amount_after=deal.amount_minor)
    _record_move(session, actor, deal, unsorted, target, from_entered_at=entered_at, at=now)
    owner = session.get(User, owner_id)
    said = (Words("Taken by %(name)s", name=owner.name) if action == "take"
            else Words("Assigned to %(name)s", name=owner.name))
    timeline(session, actor, deal.id, TimelineKind.ASSIGNMENT, at=now, say=said,
             data={"owner_id": owner_id})
    audit(session, actor, "deal", deal.id, action, {"owner": owner_id}, at=now)
    return deal


def _taken(session: Session, deal: Deal) -> Conflict:
    if deal.owner_id is not None:
        owner = session.get(User, deal.owner_id)
        return AlreadyTaken("Deal #%(deal_id)s was already taken by %(owner)s.",
                            deal_id=deal.id, owner=owner.name)
    return Conflict("Deal #%(deal_id)s is not in Unsorted any more.", deal_id=deal.id)


def assign_deal(session: Session, actor: Actor, deal_id: int, *, owner_id: int,
                expected_version: int | None = None, now: datetime | None = None) -> Deal:
    """A head hands a deal to a seller; an Unsorted deal is taken on the seller's behalf."""
    ensure_head(actor, Phrase("reassign deals"))
    now = now or utcnow()
    deal, stage = load_deal(session, deal_id)
    if stage.is_unsorted and deal.owner_id is None:
        return _claim(session, actor, deal_id, owner_id=owner_id, now=now, action="assign")
    ensure_open(deal, stage)
    owner = get_active_user(session, owner_id)
    if owner_id == deal.owner_id:
        return deal
    previous = deal.owner_id
    _apply(session, deal, expected_version, owner_id=owner_id, updated_at=now,
           last_activity_at=now)
    report_days.deal_changed(session, deal.id, owner_before=previous, owner_after=owner_id,
                             amount_before=deal.amount_minor, amount_after=deal.amount_minor)
    timeline(session, actor, deal.id, TimelineKind.ASSIGNMENT, at=now,
             say=Words("Assigned to %(name)s", name=owner.name),
             data={"from": previous, "to": owner_id})
    audit(session, actor, "deal", deal.id, "assign", {"from": previous, "to": owner_id}, at=now)
    return deal


def close_won(session: Session, actor: Actor, deal_id: int, *, expected_version: int | None,
              now: datetime | None = None) -> Deal:
    deal, _ = load_deal(session, deal_id)
    won = pipelines.outcome_stage(session, deal.pipeline_id, StageKind.WON)
    return move_deal(session, actor, deal_id, to_stage_id=won.id,
                     expected_version=expected_version, now=now)


def close_lost(session: Session, actor: Actor, deal_id: int, *, reason: str,
               expected_version: int | None, now: datetime | None = None) -> Deal:
    deal, _ = load_deal(session, deal_id)
    lost = pipelines.outcome_stage(session, deal.pipeline_id, StageKind.LOST)
    return move_deal(session, actor, deal_id, to_stage_id=lost.id, lost_reason=reason,
                     expected_version=expected_version, now=now)


def reopen_deal(session: Session, actor: Actor, deal_id: int, *, expected_version: int | None,
                to_stage_id: int | None = None, now: datetime | None = None) -> Deal:
    """Bring a won or lost deal back to work: to the stage it was closed from, by default."""
    now = now or utcnow()
    deal, stage = load_deal(session, deal_id)
    ensure_can_change_deal(actor, deal, stage)
    if stage.kind == StageKind.OPEN.value:
        raise Conflict("Deal #%(deal_id)s is open already.", deal_id=deal_id)
    if to_stage_id is None:
        to_stage_id = session.exec(
            select(StageHistory.from_stage_id).where(StageHistory.deal_id == deal_id,
                                                     StageHistory.to_stage_id == stage.id)
            .order_by(StageHistory.moved_at.desc(), StageHistory.id.desc())).first()
    target = (pipelines.get_stage(session, to_stage_id) if to_stage_id
              else pipelines.first_work_stage(session, deal.pipeline_id))
    if target.pipeline_id != deal.pipeline_id or target.kind != StageKind.OPEN.value \
            or target.is_unsorted:
        raise ValidationError("Reopen a deal into one of its pipeline's working stages.",
                              field="stage")
    entered_at = deal.stage_entered_at
    _apply(session, deal, expected_version, stage_id=target.id, stage_entered_at=now,
           updated_at=now, last_activity_at=now, closed_at=None, lost_reason=None)
    _record_move(session, actor, deal, stage, target, from_entered_at=entered_at, at=now,
                 note="reopened")
    return deal


def update_deal(session: Session, actor: Actor, deal_id: int, *, expected_version: int | None,
                title: str | None = None, amount_minor: int | None = None,
                priority: int | None = None, contact_id: int | None = None,
                now: datetime | None = None) -> Deal:
    """Change a deal's fields (not its stage or owner, which have their own services)."""
    now = now or utcnow()
    deal, stage = load_deal(session, deal_id)
    ensure_can_change_deal(actor, deal, stage)
    changes = {}
    if title is not None:
        changes["title"] = _clean_title(title)
    if amount_minor is not None:
        changes["amount_minor"] = _clean_amount(amount_minor)
    if priority is not None:
        changes["priority"] = _clean_priority(priority)
    if contact_id is not None:
        use_contact(session, actor, contact_id)
        changes["contact_id"] = contact_id
    changes = {k: v for k, v in changes.items() if getattr(deal, k) != v}
    if not changes:
        return deal
    before = {k: getattr(deal, k) for k in changes}
    _apply(session, deal, expected_version, updated_at=now, **changes)
    if "amount_minor" in changes:
        report_days.deal_changed(session, deal.id, owner_before=deal.owner_id,
                                 owner_after=deal.owner_id,
                                 amount_before=before["amount_minor"],
                                 amount_after=deal.amount_minor)
    audit(session, actor, "deal", deal.id, "update", {"before": before, "after": changes},
          at=now)
    return deal


def add_note(session: Session, actor: Actor, deal_id: int, body: str, *,
             now: datetime | None = None):
    now = now or utcnow()
    deal, stage = load_deal(session, deal_id)
    ensure_can_change_deal(actor, deal, stage)
    body = (body or "").strip()
    if not body:
        raise ValidationError("A note cannot be empty.", field="body")
    if len(body) > 10_000:
        raise ValidationError("A note is at most 10,000 characters.", field="body")
    # Notes do not bump the version: writing one must not make a colleague's drag stale.
    session.exec(update(Deal).where(Deal.id == deal_id).values(last_activity_at=now)
                 .execution_options(synchronize_session=False))
    return timeline(session, actor, deal_id, TimelineKind.NOTE, body=body, at=now)


# --- deals for callers --------------------------------------------------------------------


@dataclass(frozen=True)
class CallerDeal:
    contact_id: int | None
    deal: Deal | None
    created: bool


def open_deal_of_contact(session: Session, contact_id: int) -> Deal | None:
    """The contact's most recent open deal, where a repeat call belongs."""
    return session.exec(select(Deal).join(Stage, Stage.id == Deal.stage_id)
                        .where(Deal.contact_id == contact_id,
                               Stage.kind == StageKind.OPEN.value)
                        .order_by(Deal.created_at.desc(), Deal.id.desc())).first()


def deal_for_caller(session: Session, actor: Actor, *, e164: str, caller_name: str | None,
                    region: str, create: bool, now: datetime | None = None) -> CallerDeal:
    """Find the open deal for this number, or (when ``create``) make a contact and an
    Unsorted deal for a new caller. A repeat call attaches to the open deal.

    A number shared by several contacts raises ``NumberConflict``: nothing is attached.
    Concurrent first calls from the same number are serialised (SQLite's write lock, an
    advisory lock on PostgreSQL), so they share one deal.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.exec(text("SELECT pg_advisory_xact_lock(hashtext(:key))"),
                     params={"key": "caller:" + e164})
    contact = find_contact_by_number(session, e164)
    if contact is not None:
        deal = open_deal_of_contact(session, contact.id)
        if deal is not None or not create:
            return CallerDeal(contact.id, deal, created=False)
    if not create:
        return CallerDeal(None, None, created=False)
    pipeline = session.exec(select(Pipeline).where(Pipeline.is_default)).first()
    if pipeline is None or not pipeline.creates_deals_from_calls:
        # No pipeline set up yet (a fresh install): the call is still recorded, without a deal.
        return CallerDeal(contact.id if contact else None, None, created=False)
    name = " ".join((caller_name or "").split())[:200]
    caller = name or e164
    if contact is None:
        contact = create_contact(session, actor, name=caller, phones=[e164], region=region)
    elif is_named(contact, phones_of(session, contact.id)):
        caller = contact.name  # a known customer's deal bears their name, not the caller ID's
    deal = create_deal(session, actor, title=call_deal_title(caller),
                       pipeline_id=pipeline.id, contact_id=contact.id,
                       source=DealSource.CALL.value, now=now)
    return CallerDeal(contact.id, deal, created=True)
