"""What a robot does to a deal: one function per action, and the table the passes read.

Each action runs inside the savepoint of the run that fired it (``passes.fire_run``), takes
``(session, rule, deal, stage, pending, *, now, settings)``, writes what it changes in the
CRM, and returns the timeline text and data of what it did, or raises a CrmError that the
run records as its failure. What must not be rolled back into a repeat (an e-mail, a
reminder call) is only written down on ``pending`` here: the passes send it after the commit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlmodel import Session, select

from ..funnel import deals as deal_services
from ..funnel import pipelines, tasks
from ..config import Settings
from ..enums import Priority, Role, TaskKind
from ..errors import ValidationError
from ..rules.funnel import Actor
from ..people.mailer import mail_enabled
from ..models import Deal, Notification, RobotRule, Stage, User
from .rules import TIME_UNITS, Action, Condition

# Who the robots' changes are written as, in the timeline and the audit log.
ROBOT = Actor.system("robot")
NOTIFICATION_KIND = "robot"


@dataclass
class AfterCommit:
    """Work that must not be rolled back into a repeat: mails and calls, after the commit."""

    run_id: int
    deal_id: int
    mails: list[tuple[str, str, str, str]] = field(default_factory=list)
    call_owner_id: int | None = None


def _reason(rule: RobotRule, stage: Stage) -> str:
    """Why the robot acts, in the words of the notice the seller reads."""
    params, condition = rule.condition_params, Condition(rule.condition)
    if condition is Condition.TIME_IN_STAGE:
        unit = next(u for u in TIME_UNITS if u in params)
        return f"in {stage.name} for {params[unit]} {unit.replace('_', ' ')}"
    if condition is Condition.NO_ACTIVITY:
        return f"no call, note or move for {params['days']} days"
    if condition is Condition.UNSORTED_NOT_TAKEN:
        return f"waiting in Unsorted for {params['minutes']} minutes, nobody took it"
    if condition is Condition.MISSED_CALL_NOT_RETURNED:
        return f"a missed call not returned within {params['minutes']} minutes"
    if condition is Condition.AMOUNT:
        return f"amount in range in {stage.name}"
    if condition is Condition.STAGE_ENTERED:
        return f"entered {stage.name}"
    if condition is Condition.CALL_ANSWERED:
        return f"an inbound call was answered in {stage.name}"
    return "a missed call"


def _owner(session: Session, deal: Deal) -> User:
    owner = session.get(User, deal.owner_id) if deal.owner_id is not None else None
    if owner is None or not owner.active:
        raise ValidationError(f"Deal #{deal.id} has no active owner to remind.", field="owner")
    return owner


def _notify(session: Session, rule: RobotRule, deal: Deal, stage: Stage, users: list[User],
            pending: AfterCommit, *, now: datetime, settings: Settings, nudge: bool) -> str:
    message = rule.action_params.get("message") or rule.name
    body = f"Deal #{deal.id} “{deal.title}”: {_reason(rule, stage)}. {message}"
    if nudge:
        body += " Moved on, lower its priority, or snooze?"
    for user in users:
        session.add(Notification(user_id=user.id, kind=NOTIFICATION_KIND, body=body,
                                 deal_id=deal.id, robot_run_id=pending.run_id, created_at=now))
        if mail_enabled(settings) and user.email:
            pending.mails.append((user.email, user.name, f"[pbx-crm] {message}", body))
    return body


def _notify_owner(session, rule, deal, stage, pending, *, now, settings):
    owner = _owner(session, deal)
    _notify(session, rule, deal, stage, [owner], pending, now=now, settings=settings,
            nudge=True)
    return f"reminded {owner.name}", {"user_id": owner.id, "mails": len(pending.mails)}


def _notify_heads(session, rule, deal, stage, pending, *, now, settings):
    heads = list(session.exec(select(User).where(User.role == Role.HEAD.value, User.active)
                              .order_by(User.id)))
    if not heads:
        raise ValidationError("There is no active head to notify.", field="action")
    _notify(session, rule, deal, stage, heads, pending, now=now, settings=settings,
            nudge=False)
    return (f"told {', '.join(head.name for head in heads)}",
            {"user_ids": [head.id for head in heads], "mails": len(pending.mails)})


def _create_task(session, rule, deal, stage, pending, *, now, settings):
    params = rule.action_params
    title = params.get("title") or f"{rule.name}: {deal.title}"[:tasks.TITLE_LENGTH]
    due = now + timedelta(hours=params.get("due_hours", 24))
    # The Tasks module's own add: the same checks, the same audit entry as a seller's task.
    task = tasks.add_task(session, ROBOT, deal.id, title=title, due_at=due,
                          kind=TaskKind.ROBOT, now=now)
    return f"task “{task.title}” due {due:%Y-%m-%d %H:%M} UTC", {"task_id": task.id}


def _set_priority(session, rule, deal, stage, pending, *, now, settings):
    priority = rule.action_params["priority"]
    before = deal.priority
    deal_services.update_deal(session, ROBOT, deal.id, expected_version=None,
                              priority=priority, now=now)
    return (f"priority {Priority(before).name.lower()} → {Priority(priority).name.lower()}",
            {"from": before, "to": priority})


def _move(session, rule, deal, stage, pending, *, now, settings):
    target = pipelines.get_stage(session, rule.action_params["stage_id"])
    deal_services.move_deal(session, ROBOT, deal.id, to_stage_id=target.id,
                            expected_version=None,
                            lost_reason=rule.action_params.get("lost_reason"), now=now)
    return f"moved to {target.name}", {"from_stage_id": stage.id, "to_stage_id": target.id}


def _reassign(session, rule, deal, stage, pending, *, now, settings):
    user_id = rule.action_params["user_id"]
    previous = deal.owner_id
    deal = deal_services.assign_deal(session, ROBOT, deal.id, owner_id=user_id, now=now)
    owner = session.get(User, user_id)
    return f"reassigned to {owner.name}", {"from": previous, "to": user_id}


def _call_owner(session, rule, deal, stage, pending, *, now, settings):
    owner = _owner(session, deal)
    if not settings.ami_host:
        raise ValidationError("No AMI host is configured, so no reminder call can be made.",
                              field="action")
    pending.call_owner_id = owner.id
    return f"ringing {owner.name}'s phone", {"user_id": owner.id}


# The action functions by kind: every Action has one.
ACTIONS = {Action.NOTIFY_OWNER: _notify_owner, Action.NOTIFY_HEADS: _notify_heads,
           Action.CREATE_TASK: _create_task, Action.SET_PRIORITY: _set_priority,
           Action.MOVE_TO_STAGE: _move, Action.REASSIGN: _reassign,
           Action.CALL_OWNER: _call_owner}
