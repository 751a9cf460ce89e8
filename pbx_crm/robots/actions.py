"""What a robot does to a deal: one function per action, and the table the passes read.

Each action runs inside the savepoint of the run that fired it (``passes.fire_run``), takes
``(session, rule, deal, stage, pending, *, now, settings)``, writes what it changes in the
CRM, and returns the words for the timeline (``Words``) and the data of what it did, or
raises a CrmError that the run records as its failure. What must not be rolled back into a
repeat (an e-mail, a reminder call) is only written down on ``pending`` here: the passes send
it after the commit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlmodel import Session, select

from ..funnel import deals as deal_services
from ..funnel import pipelines, tasks
from ..config import Settings
from ..enums import Priority, Role, TaskKind
from ..errors import Phrase, ValidationError
from ..rules.funnel import Actor
from ..people.language import Words, catalog
from ..people.mailer import mail_enabled
from ..models import Deal, Notification, RobotRule, Stage, User
from .rules import TIME_UNITS, Action, Condition

# Who the robots' changes are written as, in the timeline and the audit log.
ROBOT = Actor.system("robot")
NOTIFICATION_KIND = "robot"
# An action as a failed run's timeline line names it ("could not move to stage").
ACTION_WORDS = {Action.NOTIFY_OWNER: Phrase("notify owner"),
                Action.NOTIFY_HEADS: Phrase("notify heads"),
                Action.CREATE_TASK: Phrase("create task"),
                Action.SET_PRIORITY: Phrase("set priority"),
                Action.MOVE_TO_STAGE: Phrase("move to stage"),
                Action.REASSIGN: Phrase("reassign"),
                Action.CALL_OWNER: Phrase("call owner")}
_PRIORITY_WORDS = {Priority.LOW: Phrase("low"), Priority.NORMAL: Phrase("normal"),
                   Priority.HIGH: Phrase("high")}
_UNIT_WORDS = {"hours": Phrase("hours"), "days": Phrase("days"),
               "business_hours": Phrase("business hours"),
               "business_days": Phrase("business days")}


@dataclass
class AfterCommit:
    """Work that must not be rolled back into a repeat: mails and calls, after the commit."""

    run_id: int
    deal_id: int
    mails: list[tuple[str, str, str, str]] = field(default_factory=list)
    call_owner_id: int | None = None


def _reason(rule: RobotRule, stage: Stage) -> Words:
    """Why the robot acts, in the words of the notice the seller reads."""
    params, condition = rule.condition_params, Condition(rule.condition)
    name = pipelines.stage_word(stage)
    if condition is Condition.TIME_IN_STAGE:
        unit = next(u for u in TIME_UNITS if u in params)
        return Words("in %(stage)s for %(count)s %(unit)s", stage=name, count=params[unit],
                     unit=_UNIT_WORDS.get(unit, unit.replace("_", " ")))
    if condition is Condition.NO_ACTIVITY:
        return Words("no call, note or move for %(days)s days", days=params["days"])
    if condition is Condition.UNSORTED_NOT_TAKEN:
        return Words("waiting in Unsorted for %(minutes)s minutes, nobody took it",
                     minutes=params["minutes"])
    if condition is Condition.MISSED_CALL_NOT_RETURNED:
        return Words("a missed call not returned within %(minutes)s minutes",
                     minutes=params["minutes"])
    if condition is Condition.AMOUNT:
        return Words("amount in range in %(stage)s", stage=name)
    if condition is Condition.STAGE_ENTERED:
        return Words("entered %(stage)s", stage=name)
    if condition is Condition.CALL_ANSWERED:
        return Words("an inbound call was answered in %(stage)s", stage=name)
    return Words("a missed call")


def _owner(session: Session, deal: Deal) -> User:
    owner = session.get(User, deal.owner_id) if deal.owner_id is not None else None
    if owner is None or not owner.active:
        raise ValidationError("Deal #%(deal_id)s has no active owner to remind.",
                              deal_id=deal.id, field="owner")
    return owner


def _notify(session: Session, rule: RobotRule, deal: Deal, stage: Stage, users: list[User],
            pending: AfterCommit, *, now: datetime, settings: Settings, nudge: bool) -> str:
    """The notice, kept in words so that each reader (and each mail) says it in their own
    language; the message the head wrote goes as written."""
    message = rule.action_params.get("message") or rule.name
    values = {"deal_id": deal.id, "title": deal.title, "reason": _reason(rule, stage),
              "message": message}
    said = (Words("Deal #%(deal_id)s “%(title)s”: %(reason)s. %(message)s Moved on, lower "
                  "its priority, or snooze?", **values) if nudge
            else Words("Deal #%(deal_id)s “%(title)s”: %(reason)s. %(message)s", **values))
    body, kept = said.english, {"say": said.kept()}
    for user in users:
        session.add(Notification(user_id=user.id, kind=NOTIFICATION_KIND, body=body, data=kept,
                                 deal_id=deal.id, robot_run_id=pending.run_id, created_at=now))
        if mail_enabled(settings) and user.email:
            pending.mails.append((user.email, user.name, f"[pbx-crm] {message}",
                                  said.said(catalog(user.language).gettext)))
    return body


def _notify_owner(session, rule, deal, stage, pending, *, now, settings):
    owner = _owner(session, deal)
    _notify(session, rule, deal, stage, [owner], pending, now=now, settings=settings,
            nudge=True)
    return (Words("reminded %(name)s", name=owner.name),
            {"user_id": owner.id, "mails": len(pending.mails)})


def _notify_heads(session, rule, deal, stage, pending, *, now, settings):
    heads = list(session.exec(select(User).where(User.role == Role.HEAD.value, User.active)
                              .order_by(User.id)))
    if not heads:
        raise ValidationError("There is no active head to notify.", field="action")
    _notify(session, rule, deal, stage, heads, pending, now=now, settings=settings,
            nudge=False)
    return (Words("told %(names)s", names=", ".join(head.name for head in heads)),
            {"user_ids": [head.id for head in heads], "mails": len(pending.mails)})


def _create_task(session, rule, deal, stage, pending, *, now, settings):
    params = rule.action_params
    title = params.get("title") or f"{rule.name}: {deal.title}"[:tasks.TITLE_LENGTH]
    due = now + timedelta(hours=params.get("due_hours", 24))
    # The Tasks module's own add: the same checks, the same audit entry as a seller's task.
    task = tasks.add_task(session, ROBOT, deal.id, title=title, due_at=due,
                          kind=TaskKind.ROBOT, now=now)
    return (Words("task “%(title)s” due %(due)s UTC", title=task.title,
                  due=due.strftime("%Y-%m-%d %H:%M")), {"task_id": task.id})


def _set_priority(session, rule, deal, stage, pending, *, now, settings):
    priority = rule.action_params["priority"]
    before = deal.priority
    deal_services.update_deal(session, ROBOT, deal.id, expected_version=None,
                              priority=priority, now=now)
    return (Words("priority %(before)s → %(after)s", before=_PRIORITY_WORDS[Priority(before)],
                  after=_PRIORITY_WORDS[Priority(priority)]),
            {"from": before, "to": priority})


def _move(session, rule, deal, stage, pending, *, now, settings):
    target = pipelines.get_stage(session, rule.action_params["stage_id"])
    deal_services.move_deal(session, ROBOT, deal.id, to_stage_id=target.id,
                            expected_version=None,
                            lost_reason=rule.action_params.get("lost_reason"), now=now)
    return (Words("moved to %(stage)s", stage=pipelines.stage_word(target)),
            {"from_stage_id": stage.id, "to_stage_id": target.id})


def _reassign(session, rule, deal, stage, pending, *, now, settings):
    user_id = rule.action_params["user_id"]
    previous = deal.owner_id
    deal = deal_services.assign_deal(session, ROBOT, deal.id, owner_id=user_id, now=now)
    owner = session.get(User, user_id)
    return Words("reassigned to %(name)s", name=owner.name), {"from": previous, "to": user_id}


def _call_owner(session, rule, deal, stage, pending, *, now, settings):
    owner = _owner(session, deal)
    if not settings.ami_host:
        raise ValidationError("No AMI host is configured, so no reminder call can be made.",
                              field="action")
    pending.call_owner_id = owner.id
    return Words("ringing %(name)s's phone", name=owner.name), {"user_id": owner.id}


# The action functions by kind: every Action has one.
ACTIONS = {Action.NOTIFY_OWNER: _notify_owner, Action.NOTIFY_HEADS: _notify_heads,
           Action.CREATE_TASK: _create_task, Action.SET_PRIORITY: _set_priority,
           Action.MOVE_TO_STAGE: _move, Action.REASSIGN: _reassign,
           Action.CALL_OWNER: _call_owner}
