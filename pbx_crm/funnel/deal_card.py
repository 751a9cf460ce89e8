"""Everything a deal's card shows, read in one go for the web page and the export.

``deal_card`` checks that the actor may see the deal (``deals.get_deal``, which asks
``funnel``) before reading anything else: the contact and phones, the owner, the pipeline's
stages for the stage selector, the timeline (with each call's direction, duration,
disposition and recording, and how it went leg by leg: ``call_story``, one query for the
page's calls), the tasks, for a head the sellers a deal can go to, and the
robot nudges of the deal's current stage visit still waiting for an answer.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlmodel import Session, select

from . import pipelines, tasks
from .call_story import CallStory, stories_of
from .contacts import phones_of
from .deals import get_deal
from ..enums import RobotRunStatus, Role, TimelineKind
from ..rules.funnel import Actor
from ..models import (
    Call, Contact, ContactPhone, Deal, Pipeline, RobotRule, RobotRun, Stage, Task, TimelineEntry,
    User,
)

TIMELINE_LIMIT = 200


@dataclass(frozen=True)
class TimelineLine:
    entry: TimelineEntry
    author_name: str | None
    call: Call | None
    # How the call went leg by leg (queue, sellers rung, who talked): None for a call that
    # rang one seller's phone, and for lines that are not a call's own.
    story: CallStory | None = None

    @property
    def call_seconds(self) -> int | None:
        call = self.call
        if call is None or call.answered_at is None or call.ended_at is None:
            return None
        return max(0, int((call.ended_at - call.answered_at).total_seconds()))


@dataclass(frozen=True)
class DealCard:
    deal: Deal
    stage: Stage
    pipeline: Pipeline
    stages: list[Stage]
    contact: Contact | None
    phones: list[ContactPhone]
    owner: User | None
    timeline: list[TimelineLine]
    tasks: list[Task]
    sellers: list[User]
    nudges: list[OpenNudge] = field(default_factory=list)

    @property
    def next_task(self) -> Task | None:
        """The open task due soonest (``tasks_of`` lists the open ones first, soonest due
        first), as the board's card shows it."""
        first = self.tasks[0] if self.tasks else None
        return first if first is not None and first.done_at is None else None


@dataclass(frozen=True)
class OpenNudge:
    """A robot run waiting for the seller's decision (moved on, lower priority, snooze)."""

    run: RobotRun
    rule_name: str


def open_nudges(session: Session, deal: Deal) -> list[OpenNudge]:
    """The unanswered robot runs of the deal's current stage visit: the ones that mark its
    board card overdue (``board._overdue`` asks the same), oldest first."""
    rows = session.exec(
        select(RobotRun, RobotRule.name).join(RobotRule, RobotRule.id == RobotRun.rule_id)
        .where(RobotRun.deal_id == deal.id, RobotRule.stage_id == deal.stage_id,
               RobotRun.fired_at >= deal.stage_entered_at, RobotRun.answer.is_(None),
               RobotRun.status != RobotRunStatus.FAILED.value,
               RobotRun.status != RobotRunStatus.SKIPPED.value)
        .order_by(RobotRun.fired_at, RobotRun.id)).all()
    return [OpenNudge(run, name) for run, name in rows]


def deal_card(session: Session, actor: Actor, deal_id: int) -> DealCard:
    deal = get_deal(session, actor, deal_id)
    stage = pipelines.get_stage(session, deal.stage_id)
    contact = session.get(Contact, deal.contact_id) if deal.contact_id else None
    lines = session.exec(
        select(TimelineEntry, User.name, Call)
        .outerjoin(User, User.id == TimelineEntry.author_id)
        .outerjoin(Call, Call.id == TimelineEntry.call_id)
        .where(TimelineEntry.deal_id == deal_id)
        .order_by(TimelineEntry.created_at.desc(), TimelineEntry.id.desc())
        .limit(TIMELINE_LIMIT)).all()
    call_lines = {entry.id: call for entry, _, call in lines
                  if call is not None and entry.kind == TimelineKind.CALL.value}
    stories = stories_of(session, call_lines.values())
    sellers = []
    if actor.sees_everything:
        sellers = list(session.exec(select(User).where(User.active,
                                                       User.role == Role.SELLER.value)
                                    .order_by(User.name)))
    return DealCard(
        deal=deal, stage=stage, pipeline=pipelines.get_pipeline(session, deal.pipeline_id),
        stages=pipelines.stages_of(session, deal.pipeline_id), contact=contact,
        phones=phones_of(session, contact.id) if contact else [],
        owner=session.get(User, deal.owner_id) if deal.owner_id else None,
        timeline=[TimelineLine(entry, name, call,
                               story=stories.get(call.id) if entry.id in call_lines else None)
                  for entry, name, call in lines],
        tasks=tasks.tasks_of(session, actor, deal_id), sellers=sellers,
        nudges=open_nudges(session, deal))
