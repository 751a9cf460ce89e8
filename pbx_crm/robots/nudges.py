"""Nudge answers: the seller answers a robot's reminder about one of their deals.

A "notify owner" run asks the seller to decide: moved on, lower the deal's priority, or
snooze the reminder for some days. This module owns that answer; the deal card and the
notifications page post it (``webui.routes_robots.answer_nudge_form``), and the reports
count the answers. The passes read ``snooze_until`` to nudge again once a snooze is over.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import update
from sqlmodel import Session

from ..funnel import deals as deal_services
from ..enums import NudgeAnswer, Priority, TimelineKind
from ..errors import Conflict, NotFound, Phrase, ValidationError
from ..rules.funnel import Actor, ensure_can_change_deal
from ..funnel.journal import audit, timeline
from ..models import Notification, RobotRun, utcnow
from ..people.language import Words
from .rules import member_of, whole_number

MAX_SNOOZE_DAYS = 90
# An answer as a refusal names it.
_ANSWERED = {NudgeAnswer.MOVED_ON.value: Phrase("moved on"),
             NudgeAnswer.LOWER_PRIORITY.value: Phrase("lower priority"),
             NudgeAnswer.SNOOZE.value: Phrase("snooze")}


def answer_nudge(session: Session, actor: Actor, robot_run_id: int, *, answer: str,
                 snooze_days: int | None = None, now: datetime | None = None) -> RobotRun:
    """The seller answers a robot's nudge: moved on, lower priority, or snooze N days.

    Stored on the run for the reports; "lower priority" lowers the deal's priority one step;
    "snooze" lets the rule nudge again after the snooze if the deal is still where it was.
    A run is answered once; a seller answers for their own deals only.
    """
    now = now or utcnow()
    run = session.get(RobotRun, robot_run_id)
    if run is None:
        raise NotFound("No robot run #%(run_id)s.", run_id=robot_run_id)
    deal, stage = deal_services.load_deal(session, run.deal_id)
    ensure_can_change_deal(actor, deal, stage)
    if actor.user_id is None:
        raise ValidationError("A nudge is answered by a user.", field="answer")
    kind = member_of(NudgeAnswer, answer, Phrase("answer"), "answer")
    snooze_until = None
    if kind is NudgeAnswer.SNOOZE:
        days = whole_number({"snooze_days": snooze_days}, "snooze_days", 1, MAX_SNOOZE_DAYS,
                            field="snooze_days")
        snooze_until = now + timedelta(days=days)
    elif snooze_days is not None:
        raise ValidationError("snooze_days goes with the answer “snooze” only.",
                              field="snooze_days")
    answered = session.exec(
        update(RobotRun).where(RobotRun.id == run.id, RobotRun.answer.is_(None))
        .values(answer=kind.value, answered_at=now, answered_by_id=actor.user_id,
                snooze_until=snooze_until)
        .execution_options(synchronize_session=False))
    session.refresh(run)
    if answered.rowcount != 1:
        raise Conflict("This nudge was answered already (%(answer)s).",
                       answer=_ANSWERED.get(run.answer, run.answer))
    if kind is NudgeAnswer.LOWER_PRIORITY and deal.priority > Priority.LOW.value:
        deal_services.update_deal(session, actor, deal.id, expected_version=None,
                                  priority=deal.priority - 1, now=now)
    session.exec(update(Notification).where(Notification.robot_run_id == run.id,
                                            Notification.user_id == actor.user_id,
                                            Notification.read_at.is_(None))
                 .values(read_at=now).execution_options(synchronize_session=False))
    said = (Words("snooze until %(date)s", date=snooze_until.strftime("%Y-%m-%d"))
            if snooze_until else _ANSWERED[kind.value])
    timeline(session, actor, deal.id, TimelineKind.ROBOT,
             say=Words("Nudge answered: %(answer)s", answer=said),
             robot_run_id=run.id, at=now, data={"answer": kind.value,
                                                "snooze_days": snooze_days})
    audit(session, actor, "robot_run", run.id, "answer",
          {"answer": kind.value, "snooze_days": snooze_days}, at=now)
    return run
