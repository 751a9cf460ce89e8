"""Stage robots: rules a head sets on a stage, the passes that fire them, and nudge answers.

A rule says "when this holds for a deal in my stage, do that". Conditions are timed (time in
the stage, in hours or business days on the company's working clock; no activity for N
days; an Unsorted deal nobody took for N minutes; a missed call not returned within N
minutes; an amount threshold; just entered the stage) or telephony triggers read from the
events outbox (an answered inbound call, a missed call). Actions notify the owner (in the
CRM, and by e-mail when SMTP is set up) or the heads, create a task, change the priority,
move the deal, reassign it, or ring the seller's phone through AMI as a reminder.

Each firing is a ``robot_runs`` row whose unique ``run_key`` names the rule, the deal and the
stage visit (the moment the deal entered the stage), so a rule fires once per deal per visit
whatever happens: a restart, a pass that looks again at a window it saw, two schedulers on the
same database. A pass is set-based: one query per rule selects the due deals in a window of
the condition's own time column (``checked_until``, the rule's watermark, to the cutoff), and
one INSERT .. ON CONFLICT DO NOTHING claims them. On PostgreSQL a rule row is locked with
SKIP LOCKED while its pass runs, so a second scheduler moves on to other rules. Actions that
write to the database run in the claiming transaction (a failure is rolled back to a savepoint
and recorded on the run); e-mail and AMI calls go out after the commit, at most once: a run
left pending by a crash is marked failed, never repeated.

The rule services take ``session, actor`` and leave the transaction to the caller; the passes
(``robot_pass``, ``trigger_pass``) take the engine, because each rule gets a transaction of its
own. ``pbx_crm.robots.scheduler`` runs the passes on a clock; tests call them with ``now``.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import (
    BigInteger,
    Integer,
    String,
    cast,
    exists,
    extract,
    func,
    literal,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import aliased
from sqlmodel import Session, select

from .. import deals as deal_services
from .. import events, pipelines
from ..config import Settings
from ..db import transaction
from ..enums import (
    NudgeAnswer,
    Priority,
    RobotRunStatus,
    Role,
    StageKind,
    TaskKind,
    TimelineKind,
)
from ..errors import Conflict, CrmError, NotFound, ValidationError
from ..funnel import Actor, ensure_can_change_deal, ensure_head
from ..journal import audit, timeline
from ..mailer import mail_enabled, send_mail
from ..models import (
    Call,
    Deal,
    Event,
    Notification,
    RobotCursor,
    RobotRule,
    RobotRun,
    Stage,
    Task,
    User,
    utcnow,
)
from ..working_hours import WorkingClock

log = logging.getLogger(__name__)

ROBOT = Actor.system("robot")
EVENTS_CURSOR = "events"
# Runs claimed per transaction: short, so that on SQLite the PBX hooks never wait long for
# the write lock.
BATCH = 200
# A pending run older than this was left by a scheduler that stopped between its commit and
# the e-mail or call: it is marked failed, not retried (the mail may have gone out).
INTERRUPTED_AFTER = timedelta(minutes=5)
# How long a hole in the event ids is waited on before it is taken as a rolled-back write
# (on PostgreSQL a later id can commit before an earlier one).
EVENT_GAP_WAIT = timedelta(seconds=10)
NOTIFICATION_KIND = "robot"
MAX_SNOOZE_DAYS = 90


class Condition(str, enum.Enum):
    TIME_IN_STAGE = "time_in_stage"
    NO_ACTIVITY = "no_activity"
    UNSORTED_NOT_TAKEN = "unsorted_not_taken"
    MISSED_CALL_NOT_RETURNED = "missed_call_not_returned"
    AMOUNT = "amount"
    STAGE_ENTERED = "stage_entered"
    CALL_ANSWERED = "call_answered"
    CALL_MISSED = "call_missed"


class Action(str, enum.Enum):
    NOTIFY_OWNER = "notify_owner"
    NOTIFY_HEADS = "notify_heads"
    CREATE_TASK = "create_task"
    SET_PRIORITY = "set_priority"
    MOVE_TO_STAGE = "move_to_stage"
    REASSIGN = "reassign"
    CALL_OWNER = "call_owner"


# Read from the events outbox by ``trigger_pass``; every other condition is timed.
EVENT_CONDITIONS = frozenset({Condition.CALL_ANSWERED, Condition.CALL_MISSED})
TIMED_CONDITIONS = frozenset(Condition) - EVENT_CONDITIONS
# Actions that reach the deal's owner: meaningless in Unsorted, where nobody owns a deal.
OWNER_ACTIONS = frozenset({Action.NOTIFY_OWNER, Action.CALL_OWNER})

_TIME_UNITS = {"hours": (timedelta(hours=1), 24 * 365), "days": (timedelta(days=1), 365),
               "business_hours": (None, 24 * 365), "business_days": (None, 365)}
_PRIORITIES = {"low": Priority.LOW.value, "normal": Priority.NORMAL.value,
               "high": Priority.HIGH.value}


# --- validation ---------------------------------------------------------------------------


def _whole(params: dict, name: str, low: int, high: int, *, field: str) -> int:
    value = params.get(name)
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValidationError(f"“{name}” must be a whole number from {low} to {high}.",
                              field=field)
    return value


def _only(params: dict, allowed: set[str], what: str, field: str) -> None:
    unknown = sorted(set(params) - allowed)
    if unknown:
        expected = ", ".join(sorted(allowed)) or "none"
        raise ValidationError(f"Unknown setting(s) for {what}: {', '.join(unknown)} "
                              f"(expected: {expected}).", field=field)


def _kind(enum_type, value, what: str, field: str):
    try:
        return enum_type(value)
    except ValueError:
        names = ", ".join(member.value for member in enum_type)
        raise ValidationError(f"Unknown {what} “{str(value)[:40]}”; one of: {names}.",
                              field=field) from None


def _clean_condition(condition, params, stage: Stage) -> tuple[Condition, dict]:
    kind = _kind(Condition, condition, "condition", "condition")
    params = dict(params or {})
    field = "condition_params"
    cleaned: dict = {}
    for bound in ("min_amount", "max_amount"):
        if bound in params:
            cleaned[bound] = _whole(params, bound, 0, deal_services.MAX_AMOUNT_MINOR - 1,
                                    field=field)
    base = {"min_amount", "max_amount"}
    if kind is Condition.TIME_IN_STAGE:
        _only(params, base | set(_TIME_UNITS), "time in stage", field)
        units = [unit for unit in _TIME_UNITS if unit in params]
        if len(units) != 1:
            raise ValidationError("Time in stage needs exactly one of hours, days, "
                                  "business_hours or business_days.", field=field)
        cleaned[units[0]] = _whole(params, units[0], 1, _TIME_UNITS[units[0]][1], field=field)
    elif kind is Condition.NO_ACTIVITY:
        _only(params, base | {"days"}, "no activity", field)
        cleaned["days"] = _whole(params, "days", 1, 365, field=field)
    elif kind in (Condition.UNSORTED_NOT_TAKEN, Condition.MISSED_CALL_NOT_RETURNED):
        _only(params, base | {"minutes"}, kind.value.replace("_", " "), field)
        cleaned["minutes"] = _whole(params, "minutes", 1, 7 * 24 * 60, field=field)
    elif kind is Condition.AMOUNT:
        _only(params, base, "an amount threshold", field)
        if not cleaned:
            raise ValidationError("An amount threshold needs min_amount or max_amount (minor "
                                  "units).", field=field)
    else:
        _only(params, base, kind.value.replace("_", " "), field)
    if "min_amount" in cleaned and "max_amount" in cleaned \
            and cleaned["min_amount"] > cleaned["max_amount"]:
        raise ValidationError("min_amount is above max_amount: no deal could match.",
                              field=field)
    if kind is Condition.UNSORTED_NOT_TAKEN and not stage.is_unsorted:
        raise ValidationError("“Unsorted deal not taken” belongs on the Unsorted stage.",
                              field="condition")
    if kind is Condition.CALL_ANSWERED and stage.is_unsorted:
        raise ValidationError("An answered call takes an Unsorted deal out of Unsorted "
                              "already; put this trigger on the first working stage.",
                              field="condition")
    return kind, cleaned


def _clean_action(session: Session, action, params, stage: Stage,
                  condition: Condition) -> tuple[Action, dict]:
    kind = _kind(Action, action, "action", "action")
    params = dict(params or {})
    field = "action_params"
    cleaned: dict = {}
    if kind in (Action.NOTIFY_OWNER, Action.NOTIFY_HEADS):
        _only(params, {"message"}, "a notification", field)
        if params.get("message") is not None:
            cleaned["message"] = _text(params["message"], "message", 500, field)
    elif kind is Action.CREATE_TASK:
        _only(params, {"title", "due_hours"}, "a task", field)
        if params.get("title") is not None:
            cleaned["title"] = _text(params["title"], "title", 200, field)
        cleaned["due_hours"] = (_whole(params, "due_hours", 0, 24 * 90, field=field)
                                if "due_hours" in params else 24)
    elif kind is Action.SET_PRIORITY:
        _only(params, {"priority"}, "a priority change", field)
        value = str(params.get("priority", "")).strip().lower()
        if value.isdigit() and int(value) in _PRIORITIES.values():
            cleaned["priority"] = int(value)
        elif value in _PRIORITIES:
            cleaned["priority"] = _PRIORITIES[value]
        else:
            raise ValidationError("Priority is low, normal or high.", field=field)
    elif kind is Action.MOVE_TO_STAGE:
        _only(params, {"stage_id", "stage", "lost_reason"}, "a move", field)
        target = _target_stage(session, params, stage)
        cleaned["stage_id"] = target.id
        if target.kind == StageKind.LOST.value:
            cleaned["lost_reason"] = _text(params.get("lost_reason"), "lost_reason", 500, field)
        elif params.get("lost_reason") is not None:
            raise ValidationError("lost_reason is for a move to a lost stage.", field=field)
    elif kind is Action.REASSIGN:
        _only(params, {"user_id", "login"}, "a reassignment", field)
        cleaned["user_id"] = _target_user(session, params).id
    else:
        _only(params, set(), "a reminder call", field)
    if condition is Condition.CALL_MISSED and kind is Action.CREATE_TASK:
        raise ValidationError("A missed call leaves a callback task for the owner already; "
                              "choose another action for this trigger.", field="action")
    if stage.is_unsorted and kind in OWNER_ACTIONS:
        raise ValidationError("Unsorted deals have no owner yet; notify the heads or "
                              "reassign instead.", field="action")
    if stage.is_unsorted and kind is Action.MOVE_TO_STAGE:
        raise ValidationError("A deal leaves Unsorted when a seller takes it; reassign it "
                              "instead.", field="action")
    return kind, cleaned


def _text(value, name: str, limit: int, field: str) -> str:
    value = " ".join(str(value or "").split())
    if not value:
        raise ValidationError(f"“{name}” cannot be empty.", field=field)
    if len(value) > limit:
        raise ValidationError(f"“{name}” is at most {limit} characters.", field=field)
    return value


def _target_stage(session: Session, params: dict, stage: Stage) -> Stage:
    if params.get("stage_id") is not None:
        target = session.get(Stage, _whole(params, "stage_id", 1, 2**31 - 1,
                                           field="action_params"))
    elif params.get("stage") is not None:
        target = session.exec(select(Stage).where(Stage.pipeline_id == stage.pipeline_id,
                                                  Stage.name == str(params["stage"]).strip())
                              ).first()
    else:
        raise ValidationError("A move needs the target stage (stage_id or stage).",
                              field="action_params")
    if target is None or target.pipeline_id != stage.pipeline_id:
        raise ValidationError("The target stage is not a stage of this pipeline.",
                              field="action_params")
    if target.id == stage.id or target.is_unsorted:
        raise ValidationError("Move to another working stage or an outcome, not to this "
                              "stage or to Unsorted.", field="action_params")
    return target


def _target_user(session: Session, params: dict) -> User:
    if params.get("user_id") is not None:
        user = session.get(User, _whole(params, "user_id", 1, 2**31 - 1,
                                        field="action_params"))
    elif params.get("login") is not None:
        user = session.exec(select(User).where(User.login == str(params["login"]).strip()
                                               .lower())).first()
    else:
        raise ValidationError("A reassignment needs the seller (user_id or login).",
                              field="action_params")
    if user is None or not user.active:
        raise ValidationError("Reassign to an active user.", field="action_params")
    return user


# --- rules --------------------------------------------------------------------------------


def _open_stage(session: Session, stage_id: int) -> Stage:
    stage = pipelines.get_stage(session, stage_id)
    if stage.kind != StageKind.OPEN.value:
        raise ValidationError("Robots work on open stages, not on won or lost ones.",
                              field="stage")
    return stage


def get_rule(session: Session, rule_id: int) -> RobotRule:
    rule = session.get(RobotRule, rule_id)
    if rule is None:
        raise NotFound(f"No robot rule #{rule_id}.")
    return rule


def create_rule(session: Session, actor: Actor, *, stage_id: int, name: str, condition: str,
                condition_params: dict | None = None, action: str,
                action_params: dict | None = None, active: bool = True,
                now: datetime | None = None) -> RobotRule:
    """A head sets a robot on a stage; the next pass applies it to the deals already there."""
    ensure_head(actor, "set up robots")
    stage = _open_stage(session, stage_id)
    name = _text(name, "name", 120, "name")
    condition, condition_params = _clean_condition(condition, condition_params, stage)
    action, action_params = _clean_action(session, action, action_params, stage, condition)
    rule = RobotRule(stage_id=stage.id, name=name, active=bool(active),
                     condition=condition.value, condition_params=condition_params,
                     action=action.value, action_params=action_params,
                     created_by_id=actor.user_id, created_at=now or utcnow())
    session.add(rule)
    session.flush()
    audit(session, actor, "robot_rule", rule.id, "create",
          {"stage": stage.id, "name": name, "condition": condition.value,
           "condition_params": condition_params, "action": action.value,
           "action_params": action_params}, at=now)
    return rule


def update_rule(session: Session, actor: Actor, rule_id: int, *, name: str | None = None,
                condition: str | None = None, condition_params: dict | None = None,
                action: str | None = None, action_params: dict | None = None,
                now: datetime | None = None) -> RobotRule:
    """Change a rule. A changed condition is looked at afresh over the deals in the stage;
    deals it fired on in their current visit are not fired on again."""
    ensure_head(actor, "set up robots")
    rule = get_rule(session, rule_id)
    stage = _open_stage(session, rule.stage_id)
    new_condition, new_condition_params = _clean_condition(
        condition or rule.condition,
        rule.condition_params if condition_params is None else condition_params, stage)
    new_action, new_action_params = _clean_action(
        session, action or rule.action,
        rule.action_params if action_params is None else action_params, stage, new_condition)
    before = {"name": rule.name, "condition": rule.condition,
              "condition_params": rule.condition_params, "action": rule.action,
              "action_params": rule.action_params}
    after = {"name": _text(name, "name", 120, "name") if name is not None else rule.name,
             "condition": new_condition.value, "condition_params": new_condition_params,
             "action": new_action.value, "action_params": new_action_params}
    if after == before:
        return rule
    if (after["condition"], after["condition_params"]) != (before["condition"],
                                                           before["condition_params"]):
        rule.checked_until = None
    for key, value in after.items():
        setattr(rule, key, value)
    session.add(rule)
    audit(session, actor, "robot_rule", rule.id, "update", {"before": before, "after": after},
          at=now)
    return rule


def set_rule_active(session: Session, actor: Actor, rule_id: int, active: bool, *,
                    now: datetime | None = None) -> RobotRule:
    """Switch a rule off or on; switched on again, it catches up on the deals due meanwhile."""
    ensure_head(actor, "set up robots")
    rule = get_rule(session, rule_id)
    if rule.active == bool(active):
        return rule
    rule.active = bool(active)
    if rule.active:
        rule.checked_until = None
    session.add(rule)
    audit(session, actor, "robot_rule", rule.id, "enable" if active else "disable", at=now)
    return rule


def delete_rule(session: Session, actor: Actor, rule_id: int, *,
                now: datetime | None = None) -> None:
    """Delete a rule with its run history (switch it off to keep the history)."""
    ensure_head(actor, "set up robots")
    rule = get_rule(session, rule_id)
    audit(session, actor, "robot_rule", rule.id, "delete",
          {"name": rule.name, "stage": rule.stage_id}, at=now)
    session.delete(rule)
    session.flush()


def list_rules(session: Session, actor: Actor, pipeline_id: int | None = None
               ) -> list[tuple[RobotRule, Stage]]:
    """Rules with their stages, in board order; every pipeline's when none is given."""
    ensure_head(actor, "see the robots")
    query = select(RobotRule, Stage).join(Stage, Stage.id == RobotRule.stage_id)
    if pipeline_id is not None:
        pipelines.get_pipeline(session, pipeline_id)
        query = query.where(Stage.pipeline_id == pipeline_id)
    return list(session.exec(query.order_by(Stage.pipeline_id, Stage.position, RobotRule.id)))


@dataclass(frozen=True)
class RunView:
    """One line of the robots' history, as a head reads it."""

    run: RobotRun
    rule_name: str
    action: str
    deal_title: str
    stage_name: str


def recent_runs(session: Session, actor: Actor, *, limit: int = 50,
                failed_only: bool = False) -> list[RunView]:
    """The latest robot runs, newest first, failures included (or only them)."""
    ensure_head(actor, "see the robots' history")
    if not 1 <= limit <= 1000:
        raise ValidationError("Show 1 to 1000 runs.", field="limit")
    query = (select(RobotRun, RobotRule.name, RobotRule.action, Deal.title, Stage.name)
             .join(RobotRule, RobotRule.id == RobotRun.rule_id)
             .join(Deal, Deal.id == RobotRun.deal_id)
             .join(Stage, Stage.id == RobotRule.stage_id))
    if failed_only:
        query = query.where(RobotRun.status == RobotRunStatus.FAILED.value)
    rows = session.exec(query.order_by(RobotRun.fired_at.desc(), RobotRun.id.desc())
                        .limit(limit))
    return [RunView(*row) for row in rows]


# --- nudge answers ------------------------------------------------------------------------


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
        raise NotFound(f"No robot run #{robot_run_id}.")
    deal, stage = deal_services.load_deal(session, run.deal_id)
    ensure_can_change_deal(actor, deal, stage)
    if actor.user_id is None:
        raise ValidationError("A nudge is answered by a user.", field="answer")
    kind = _kind(NudgeAnswer, answer, "answer", "answer")
    snooze_until = None
    if kind is NudgeAnswer.SNOOZE:
        days = _whole({"snooze_days": snooze_days}, "snooze_days", 1, MAX_SNOOZE_DAYS,
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
        raise Conflict(f"This nudge was answered already ({run.answer.replace('_', ' ')}).")
    if kind is NudgeAnswer.LOWER_PRIORITY and deal.priority > Priority.LOW.value:
        deal_services.update_deal(session, actor, deal.id, expected_version=None,
                                  priority=deal.priority - 1, now=now)
    session.exec(update(Notification).where(Notification.robot_run_id == run.id,
                                            Notification.user_id == actor.user_id,
                                            Notification.read_at.is_(None))
                 .values(read_at=now).execution_options(synchronize_session=False))
    said = (f"snooze until {snooze_until:%Y-%m-%d}" if snooze_until
            else kind.value.replace("_", " "))
    timeline(session, actor, deal.id, TimelineKind.ROBOT, body=f"Nudge answered: {said}",
             robot_run_id=run.id, at=now, data={"answer": kind.value,
                                                "snooze_days": snooze_days})
    audit(session, actor, "robot_run", run.id, "answer",
          {"answer": kind.value, "snooze_days": snooze_days}, at=now)
    return run


# --- firing -------------------------------------------------------------------------------


@dataclass
class PassReport:
    """What a pass did: rules looked at, runs fired (done, failed, or waiting for the mail
    or call that follows the commit), and rules another scheduler was busy with."""

    rules: int = 0
    fired: int = 0
    failed: int = 0
    skipped_rules: int = 0
    events: int = 0
    errors: int = 0
    run_ids: list[int] = field(default_factory=list)

    def add(self, other: PassReport) -> None:
        self.errors += other.errors
        self.rules += other.rules
        self.fired += other.fired
        self.failed += other.failed
        self.skipped_rules += other.skipped_rules
        self.events += other.events
        self.run_ids += other.run_ids


@dataclass
class _AfterCommit:
    """Work that must not be rolled back into a repeat: mails and calls, after the commit."""

    run_id: int
    deal_id: int
    mails: list[tuple[str, str, str, str]] = field(default_factory=list)
    call_owner_id: int | None = None


Originate = Callable[..., object]


def _insert(session: Session):
    return (postgresql.insert if session.get_bind().dialect.name == "postgresql"
            else sqlite.insert)


def _epoch_ms(session: Session, column):
    """A timestamp as whole milliseconds since 1970, computed by the database, so every
    scheduler builds the same run key from the same row."""
    if session.get_bind().dialect.name == "postgresql":
        return cast(func.floor(extract("epoch", column) * 1000), BigInteger)
    # SQLite keeps "YYYY-MM-DD HH:MM:SS.ffffff" (UTC); %f is "SS.SSS".
    return (cast(func.strftime("%s", column), Integer) * 1000
            + cast(func.substr(func.strftime("%f", column), 4), Integer))


def _key(*parts):
    expression = literal(parts[0], String)
    for part in parts[1:]:
        expression = expression.concat(part if isinstance(part, str)
                                       else cast(part, String))
    return expression


def _amount_filters(rule: RobotRule) -> list:
    params = rule.condition_params
    filters = []
    if "min_amount" in params:
        filters.append(Deal.amount_minor >= params["min_amount"])
    if "max_amount" in params:
        filters.append(Deal.amount_minor <= params["max_amount"])
    return filters


def _cutoff(rule: RobotRule, now: datetime, clock: WorkingClock) -> datetime | None:
    """The latest value of the condition's time column that makes a deal due at ``now``."""
    params, condition = rule.condition_params, Condition(rule.condition)
    if condition is Condition.TIME_IN_STAGE:
        unit = next(u for u in _TIME_UNITS if u in params)
        step = _TIME_UNITS[unit][0]
        if step is not None:
            return now - step * params[unit]
        per = clock.day_length if unit == "business_days" else timedelta(hours=1)
        return clock.cutoff(now, per * params[unit])
    if condition is Condition.NO_ACTIVITY:
        return now - timedelta(days=params["days"])
    if condition in (Condition.UNSORTED_NOT_TAKEN, Condition.MISSED_CALL_NOT_RETURNED):
        return now - timedelta(minutes=params["minutes"])
    if condition is Condition.STAGE_ENTERED:
        return now
    return None  # an amount holds or not, whenever


def _due(session: Session, rule: RobotRule, *, lower: datetime | None,
         cutoff: datetime | None, limit: int):
    """One query: (deal id, run key, time-column value) of the deals due for ``rule`` in the
    window [lower, cutoff], without a run yet, oldest first."""
    condition = Condition(rule.condition)
    prefix = f"r{rule.id}:d"
    claimed = aliased(RobotRun)
    if condition is Condition.MISSED_CALL_NOT_RETURNED:
        later = aliased(Call)
        moment = Call.ended_at
        run_key = _key(prefix, Deal.id, ":c", Call.id)
        query = (select(Deal.id, run_key, moment).select_from(Call)
                 .join(Deal, Deal.id == Call.deal_id)
                 # Literal, as in the partial index, so that SQLite can use it.
                 .where(text("calls.direction = 'inbound' AND calls.disposition IN "
                             "('missed', 'abandoned')"))
                 .where(~exists().where(later.deal_id == Call.deal_id, later.id != Call.id,
                                        later.ringing_at >= Call.ringing_at)))
    else:
        moment = (Deal.last_activity_at if condition is Condition.NO_ACTIVITY
                  else Deal.stage_entered_at)
        visit = _epoch_ms(session, Deal.stage_entered_at)
        run_key = _key(prefix, Deal.id, ":v", visit)
        if condition is Condition.NO_ACTIVITY:
            # Once per quiet spell: activity starts a new one.
            run_key = run_key.concat(":a").concat(cast(_epoch_ms(session, moment), String))
        query = select(Deal.id, run_key, moment)
        if condition is Condition.UNSORTED_NOT_TAKEN:
            query = query.where(Deal.owner_id.is_(None))
        if condition is Condition.AMOUNT:
            # The board's totals index (pipeline, stage, amount) serves the range.
            query = query.where(Deal.pipeline_id == rule_pipeline(session, rule))
    query = query.where(Deal.stage_id == rule.stage_id, *_amount_filters(rule),
                        ~exists().where(claimed.run_key == run_key))
    if cutoff is not None:
        query = query.where(moment <= cutoff)
    if lower is not None:
        query = query.where(moment >= lower)
    return session.exec(query.order_by(moment, Deal.id).limit(limit)).all()


def rule_pipeline(session: Session, rule: RobotRule) -> int:
    return session.exec(select(Stage.pipeline_id).where(Stage.id == rule.stage_id)).one()


def _snoozed_due(session: Session, rule: RobotRule, now: datetime, clock: WorkingClock,
                 limit: int):
    """Runs whose snooze is over while the deal is still in the same stage visit: they
    fire once more, each under its own key."""
    follow_up = aliased(RobotRun)
    run_key = RobotRun.run_key.concat(":s").concat(cast(RobotRun.id, String))
    query = (select(RobotRun.deal_id, run_key).join(Deal, Deal.id == RobotRun.deal_id)
             .where(RobotRun.rule_id == rule.id, RobotRun.snooze_until.is_not(None),
                    RobotRun.snooze_until <= now, Deal.stage_id == rule.stage_id,
                    Deal.stage_entered_at <= RobotRun.fired_at,
                    ~exists().where(follow_up.run_key == run_key)))
    if Condition(rule.condition) is Condition.NO_ACTIVITY:
        query = query.where(Deal.last_activity_at <= _cutoff(rule, now, clock))
    return session.exec(query.order_by(RobotRun.id).limit(limit)).all()


def _claim(session: Session, rule: RobotRule, rows, now: datetime) -> list[tuple[int, int]]:
    """Insert the runs; a key someone else claimed first is skipped. (run id, deal id)."""
    if not rows:
        return []
    table = RobotRun.__table__
    statement = (_insert(session)(table)
                 .values([{"rule_id": rule.id, "deal_id": deal_id, "run_key": run_key,
                           "status": RobotRunStatus.PENDING.value, "fired_at": now}
                          for deal_id, run_key in rows])
                 .on_conflict_do_nothing(index_elements=["run_key"])
                 .returning(table.c.id, table.c.deal_id))
    return sorted((row.id, row.deal_id) for row in session.execute(statement))


def _lock_rule(session: Session, rule_id: int) -> RobotRule | None:
    """The rule, locked for this pass; None when it is gone, off, or another scheduler holds
    it (PostgreSQL; SQLite runs one writer at a time anyway)."""
    query = (select(RobotRule).where(RobotRule.id == rule_id, RobotRule.active)
             .with_for_update(skip_locked=True))
    return session.exec(query).first()


def robot_pass(engine, settings: Settings, *, now: datetime | None = None,
               originate: Originate | None = None, conditions=TIMED_CONDITIONS,
               batch: int = BATCH, on_run: Callable[[int], object] | None = None) -> PassReport:
    """Fire every active timed rule on the deals due at ``now``.

    Each rule is worked in batches of ``batch`` runs, each batch one transaction that claims
    its runs, acts, and moves the rule's watermark. ``on_run(run_id)`` is called as each run
    is acted on (progress; an exception there ends the pass like a crash would).
    """
    now = now or utcnow()
    clock = WorkingClock.of(settings)
    grace = timedelta(minutes=settings.robot_grace_minutes)
    report = PassReport()
    with transaction(engine, read_only=True) as session:
        rule_ids = list(session.exec(select(RobotRule.id).where(
            RobotRule.active, RobotRule.condition.in_([c.value for c in conditions]))
            .order_by(RobotRule.id)))
    for rule_id in rule_ids:
        try:
            report.add(_rule_pass(engine, settings, rule_id, now=now, clock=clock,
                                  grace=grace, originate=originate, batch=batch,
                                  on_run=on_run))
        except Exception:
            # One broken rule must not stop the others; it is tried again next pass.
            log.exception("robot rule #%s failed; the pass goes on with the other rules",
                          rule_id)
            report.errors += 1
    return report


def _rule_pass(engine, settings: Settings, rule_id: int, *, now: datetime,
               clock: WorkingClock, grace: timedelta, originate: Originate | None,
               batch: int, on_run) -> PassReport:
    """One rule: the due deals in batches, then the runs whose snooze is over."""
    report = PassReport(rules=1)
    resume_at = None  # where the previous full batch of this pass stopped
    for step in ("due", "snoozed"):
        while True:
            after: list[_AfterCommit] = []
            with transaction(engine) as session:
                rule = _lock_rule(session, rule_id)
                if rule is None:
                    report.skipped_rules += 1
                    return report
                if step == "due":
                    cutoff = _cutoff(rule, now, clock)
                    lower = resume_at
                    if lower is None and rule.checked_until is not None and cutoff is not None:
                        lower = rule.checked_until - grace
                    due = _due(session, rule, lower=lower, cutoff=cutoff, limit=batch)
                    rows = [(deal_id, run_key) for deal_id, run_key, _ in due]
                    full = len(rows) == batch
                    if cutoff is not None:
                        # A full batch moves the watermark to where it stopped, so that a
                        # restart goes on from there; the last batch moves it to the cutoff.
                        resume_at = due[-1][2] if full else None
                        watermark = (max(rule.checked_until or resume_at, resume_at) if full
                                     else cutoff)
                        session.exec(update(RobotRule).where(RobotRule.id == rule.id)
                                     .values(checked_until=watermark)
                                     .execution_options(synchronize_session=False))
                else:
                    rows = _snoozed_due(session, rule, now, clock, batch)
                    full = len(rows) == batch
                claimed = _claim(session, rule, rows, now)
                _act_all(session, rule, claimed, now=now, settings=settings, report=report,
                         after=after, on_run=on_run)
            _after_commit(engine, settings, after, now=now, originate=originate,
                          report=report)
            if not full:
                break
    return report


def _act_all(session: Session, rule: RobotRule, claimed, *, now: datetime,
             settings: Settings, report: PassReport, after: list[_AfterCommit],
             on_run) -> None:
    if not claimed:
        return
    rows = session.exec(select(Deal, Stage).join(Stage, Stage.id == Deal.stage_id)
                        .where(Deal.id.in_([deal_id for _, deal_id in claimed]))).all()
    found = {deal.id: (deal, stage) for deal, stage in rows}
    for run_id, deal_id in claimed:
        deal, stage = found[deal_id]
        _fire_counted(session, rule, run_id, deal, stage, report, after, now=now,
                      settings=settings)
        if on_run is not None:
            on_run(run_id)


def _fire_counted(session: Session, rule: RobotRule, run_id: int, deal: Deal, stage: Stage,
                  report: PassReport, after: list, *, now: datetime, settings: Settings) -> None:
    """``_fire``, counted in the pass's report; what must follow the commit (mails, a
    reminder call) goes to ``after``."""
    report.fired += 1
    report.run_ids.append(run_id)
    pending = _fire(session, rule, run_id, deal, stage, now=now, settings=settings)
    if pending is None:
        report.failed += 1
    elif pending.mails or pending.call_owner_id is not None:
        after.append(pending)


def _fire(session: Session, rule: RobotRule, run_id: int, deal: Deal, stage: Stage, *,
          now: datetime, settings: Settings) -> _AfterCommit | None:
    """Act on one claimed run inside a savepoint; None when the action was refused."""
    pending = _AfterCommit(run_id, deal.id)
    action = Action(rule.action)
    try:
        with session.begin_nested():
            body, data = _ACTIONS[action](session, rule, deal, stage, pending, now=now,
                                          settings=settings)
            timeline(session, ROBOT, deal.id, TimelineKind.ROBOT, body=f"{rule.name}: {body}",
                     robot_run_id=run_id, at=now,
                     data={"rule_id": rule.id, "action": action.value, **data})
            audit(session, ROBOT, "robot_run", run_id, action.value,
                  {"rule": rule.id, "deal": deal.id, **data}, at=now)
    except Exception as error:
        if isinstance(error, CrmError):
            reason = error.message
        else:
            log.exception("robot rule #%s on deal #%s failed", rule.id, deal.id)
            reason = f"internal error: {type(error).__name__}: {error}"[:500]
        _finish(session, run_id, RobotRunStatus.FAILED, now, reason)
        timeline(session, ROBOT, deal.id, TimelineKind.ROBOT, robot_run_id=run_id, at=now,
                 body=f"{rule.name}: could not {action.value.replace('_', ' ')}: {reason}",
                 data={"rule_id": rule.id, "action": action.value, "error": reason})
        audit(session, ROBOT, "robot_run", run_id, "failed",
              {"rule": rule.id, "deal": deal.id, "error": reason}, at=now)
        return None
    waiting = pending.mails or pending.call_owner_id is not None
    if not waiting:
        _finish(session, run_id, RobotRunStatus.DONE, now)
    return pending


def _finish(session: Session, run_id: int, status: RobotRunStatus, now: datetime,
            error: str | None = None) -> None:
    session.exec(update(RobotRun).where(RobotRun.id == run_id)
                 .values(status=status.value, finished_at=now, error=error)
                 .execution_options(synchronize_session=False))


# --- actions ------------------------------------------------------------------------------
# Each returns the timeline text and data of what it did, or raises a CrmError.


def _reason(rule: RobotRule, stage: Stage) -> str:
    params, condition = rule.condition_params, Condition(rule.condition)
    if condition is Condition.TIME_IN_STAGE:
        unit = next(u for u in _TIME_UNITS if u in params)
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
            pending: _AfterCommit, *, now: datetime, settings: Settings, nudge: bool) -> str:
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
    title = params.get("title") or f"{rule.name}: {deal.title}"[:200]
    due = now + timedelta(hours=params.get("due_hours", 24))
    task = Task(deal_id=deal.id, assignee_id=deal.owner_id, title=title,
                kind=TaskKind.ROBOT.value, due_at=due, created_at=now)
    session.add(task)
    session.flush()
    return f"task “{title}” due {due:%Y-%m-%d %H:%M} UTC", {"task_id": task.id}


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


_ACTIONS = {Action.NOTIFY_OWNER: _notify_owner, Action.NOTIFY_HEADS: _notify_heads,
            Action.CREATE_TASK: _create_task, Action.SET_PRIORITY: _set_priority,
            Action.MOVE_TO_STAGE: _move, Action.REASSIGN: _reassign,
            Action.CALL_OWNER: _call_owner}


# --- after the commit: mails and calls ----------------------------------------------------


def _after_commit(engine, settings: Settings, work: list[_AfterCommit], *, now: datetime,
                  originate: Originate | None, report: PassReport) -> None:
    from ..telephony.click_to_call import call_contact

    for item in work:
        errors = []
        for address, name, subject, body in item.mails:
            try:
                send_mail(settings, to=address, to_name=name, subject=subject, body=body)
            except CrmError as error:
                errors.append(error.message)
        with transaction(engine) as session:
            if item.call_owner_id is not None:
                try:
                    if originate is None:
                        raise ValidationError("The scheduler has no AMI connection.")
                    owner = session.get(User, item.call_owner_id)
                    placed = call_contact(session, Actor.of(owner), item.deal_id, number=None,
                                          originate=originate, settings=settings)
                    timeline(session, ROBOT, item.deal_id, TimelineKind.ROBOT, at=now,
                             robot_run_id=item.run_id,
                             body=f"Reminder call: {placed.channel} rings, then "
                                  f"{placed.number}",
                             data={"channel": placed.channel, "action_id": placed.action_id})
                except CrmError as error:
                    errors.append(error.message)
            status = RobotRunStatus.FAILED if errors else RobotRunStatus.DONE
            _finish(session, item.run_id, status, now, "; ".join(errors) or None)
            if errors:
                report.failed += 1
                audit(session, ROBOT, "robot_run", item.run_id, "failed",
                      {"deal": item.deal_id, "error": "; ".join(errors)}, at=now)


def recover_interrupted(engine, *, now: datetime | None = None) -> int:
    """Mark failed the runs a stopped scheduler left between its commit and its mail or
    call: whether that went out is unknown, and a second one would be a duplicate."""
    now = now or utcnow()
    with transaction(engine) as session:
        result = session.exec(
            update(RobotRun).where(RobotRun.status == RobotRunStatus.PENDING.value,
                                   RobotRun.fired_at < now - INTERRUPTED_AFTER)
            .values(status=RobotRunStatus.FAILED.value, finished_at=now,
                    error="interrupted before its e-mail or call was confirmed")
            .execution_options(synchronize_session=False))
        return result.rowcount


# --- triggers from the telephony events ---------------------------------------------------


def _lock_cursor(session: Session, name: str, now: datetime) -> RobotCursor:
    """The cursor row, locked; made on first use at the end of the stream (old calls do not
    trigger anything)."""
    start = events.latest_event_id(session)
    session.execute(_insert(session)(RobotCursor.__table__)
                    .values(name=name, position=start, updated_at=now)
                    .on_conflict_do_nothing(index_elements=["name"]))
    return session.exec(select(RobotCursor).where(RobotCursor.name == name)
                        .with_for_update()).one()


def trigger_pass(engine, settings: Settings, *, now: datetime | None = None,
                 originate: Originate | None = None, gaps: dict[int, datetime] | None = None,
                 batch: int = 500) -> PassReport:
    """Act on the telephony events since the cursor (answered and missed inbound calls),
    then on the deals that just entered a stage with a "stage entered" robot.

    ``gaps`` remembers (id -> first seen) the holes in the event ids this reader waits on;
    pass the same dict on every call.
    """
    now = now or utcnow()
    gaps = {} if gaps is None else gaps
    report = PassReport()
    after: list[_AfterCommit] = []
    with transaction(engine) as session:
        cursor = _lock_cursor(session, EVENTS_CURSOR, now)
        rows = session.exec(select(Event.id, Event.kind, Event.target_user_id, Event.payload)
                            .where(Event.id > cursor.position).order_by(Event.id)
                            .limit(batch)).all()
        position = cursor.position
        for event_id, kind, target, payload in rows:
            if event_id != position + 1:
                first_seen = gaps.setdefault(position + 1, now)
                if now - first_seen < EVENT_GAP_WAIT:
                    break
                gaps.pop(position + 1, None)
            position = event_id
            report.events += 1
            # The copy addressed to nobody in particular: one per call, whoever else got one.
            if target is None and kind in (events.ANSWERED, events.CALL_ENDED):
                _on_call_event(session, kind, payload or {}, now=now, settings=settings,
                               report=report, after=after)
        if position != cursor.position:
            cursor.position = position
            cursor.updated_at = now
            session.add(cursor)
    _after_commit(engine, settings, after, now=now, originate=originate, report=report)
    report.add(robot_pass(engine, settings, now=now, originate=originate,
                          conditions={Condition.STAGE_ENTERED}))
    return report


def _on_call_event(session: Session, kind: str, payload: dict, *, now: datetime,
                   settings: Settings, report: PassReport, after: list[_AfterCommit]) -> None:
    call = session.exec(select(Call).where(Call.uniqueid == str(payload.get("uniqueid"))
                                           )).first()
    if call is None or call.deal_id is None or call.direction != "inbound":
        return
    deal, stage = deal_services.load_deal(session, call.deal_id)
    if kind == events.ANSWERED:
        # Only a call answered while the deal was already here: the answer that takes an
        # Unsorted deal into the first stage does not also push it on.
        if call.answered_at is None or deal.stage_entered_at >= call.answered_at:
            return
        condition = Condition.CALL_ANSWERED
    elif call.disposition in ("missed", "abandoned"):
        condition = Condition.CALL_MISSED
    else:
        return
    rules = session.exec(select(RobotRule).where(RobotRule.stage_id == stage.id,
                                                 RobotRule.active,
                                                 RobotRule.condition == condition.value)
                         .order_by(RobotRule.id)).all()
    for rule in rules:
        if not _amount_in_range(rule, deal):
            continue
        claimed = _claim(session, rule, [(deal.id, f"r{rule.id}:d{deal.id}:c{call.id}")], now)
        for run_id, _ in claimed:
            _fire_counted(session, rule, run_id, deal, stage, report, after, now=now,
                          settings=settings)
            session.refresh(deal)
            if deal.stage_id != stage.id:
                return  # moved on: the stage's other triggers no longer apply


def _amount_in_range(rule: RobotRule, deal: Deal) -> bool:
    params = rule.condition_params
    return (params.get("min_amount", 0) <= deal.amount_minor
            and deal.amount_minor <= params.get("max_amount", deal.amount_minor))
