"""Stage robots' rules: what a head may set on a stage, and the services that keep them.

A rule says "when this holds for a deal in my stage, do that". Conditions are timed (time in
the stage, in hours or business days on the company's working clock; no activity for N
days; an Unsorted deal nobody took for N minutes; a missed call not returned within N
minutes; an amount threshold; just entered the stage) or telephony triggers read from the
events outbox (an answered inbound call, a missed call). Actions notify the owner (in the
CRM, and by e-mail when SMTP is set up) or the heads, create a task, change the priority,
move the deal, reassign it, or ring the seller's phone through AMI as a reminder.

This module owns that vocabulary (``Condition``, ``Action``), the validation of a rule's
settings, the rule services (create, update, switch on and off, delete, list) and the
history of runs a head reads. The services take ``session, actor`` and leave the
transaction to the caller: the CLI, the robots page, the demo. ``passes`` and ``triggers``
fire the rules; ``actions`` does what they say.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlmodel import Session, select

from ..funnel import deals as deal_services
from ..funnel import pipelines
from ..enums import Priority, RobotRunStatus, StageKind
from ..errors import NotFound, Phrase, ValidationError
from ..rules.funnel import Actor, ensure_head
from ..funnel.journal import audit
from ..models import Deal, RobotRule, RobotRun, Stage, User, utcnow


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
# Units of "time in stage": the step of a calendar unit (None: counted on the working clock)
# and the largest count a rule may set.
TIME_UNITS = {"hours": (timedelta(hours=1), 24 * 365), "days": (timedelta(days=1), 365),
              "business_hours": (None, 24 * 365), "business_days": (None, 365)}
_PRIORITIES = {"low": Priority.LOW.value, "normal": Priority.NORMAL.value,
               "high": Priority.HIGH.value}
# How a refusal of a condition's settings names the condition.
_CONDITION_WORDS = {Condition.UNSORTED_NOT_TAKEN: Phrase("unsorted not taken"),
                    Condition.MISSED_CALL_NOT_RETURNED: Phrase("missed call not returned"),
                    Condition.STAGE_ENTERED: Phrase("stage entered"),
                    Condition.CALL_ANSWERED: Phrase("call answered"),
                    Condition.CALL_MISSED: Phrase("call missed")}


# --- validation ---------------------------------------------------------------------------


def whole_number(params: dict, name: str, low: int, high: int, *, field: str) -> int:
    """``params[name]`` as a whole number in [low, high] (digits typed in a form count), or
    a ValidationError on ``field``."""
    value = params.get(name)
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValidationError("“%(name)s” must be a whole number from %(low)s to %(high)s.",
                              name=name, low=low, high=high, field=field)
    return value


def _only(params: dict, allowed: set[str], what: Phrase, field: str) -> None:
    unknown = sorted(set(params) - allowed)
    if unknown:
        expected = ", ".join(sorted(allowed)) or Phrase("none")
        raise ValidationError("Unknown setting(s) for %(what)s: %(unknown)s "
                              "(expected: %(expected)s).", what=what,
                              unknown=", ".join(unknown), expected=expected, field=field)


def member_of(enum_type, value, what: Phrase, field: str):
    """``value`` as a member of ``enum_type``, or a ValidationError that lists the members."""
    try:
        return enum_type(value)
    except ValueError:
        names = ", ".join(member.value for member in enum_type)
        raise ValidationError("Unknown %(what)s “%(value)s”; one of: %(names)s.", what=what,
                              value=str(value)[:40], names=names, field=field) from None


def _clean_condition(condition, params, stage: Stage) -> tuple[Condition, dict]:
    kind = member_of(Condition, condition, Phrase("condition"), "condition")
    params = dict(params or {})
    field = "condition_params"
    cleaned: dict = {}
    for bound in ("min_amount", "max_amount"):
        if bound in params:
            cleaned[bound] = whole_number(params, bound, 0,
                                          deal_services.MAX_AMOUNT_MINOR - 1, field=field)
    base = {"min_amount", "max_amount"}
    if kind is Condition.TIME_IN_STAGE:
        _only(params, base | set(TIME_UNITS), Phrase("time in stage"), field)
        units = [unit for unit in TIME_UNITS if unit in params]
        if len(units) != 1:
            raise ValidationError("Time in stage needs exactly one of hours, days, "
                                  "business_hours or business_days.", field=field)
        cleaned[units[0]] = whole_number(params, units[0], 1, TIME_UNITS[units[0]][1],
                                         field=field)
    elif kind is Condition.NO_ACTIVITY:
        _only(params, base | {"days"}, Phrase("no activity"), field)
        cleaned["days"] = whole_number(params, "days", 1, 365, field=field)
    elif kind in (Condition.UNSORTED_NOT_TAKEN, Condition.MISSED_CALL_NOT_RETURNED):
        _only(params, base | {"minutes"}, _CONDITION_WORDS[kind], field)
        cleaned["minutes"] = whole_number(params, "minutes", 1, 7 * 24 * 60, field=field)
    elif kind is Condition.AMOUNT:
        _only(params, base, Phrase("an amount threshold"), field)
        if not cleaned:
            raise ValidationError("An amount threshold needs min_amount or max_amount (minor "
                                  "units).", field=field)
    else:
        _only(params, base, _CONDITION_WORDS[kind], field)
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
    kind = member_of(Action, action, Phrase("action"), "action")
    params = dict(params or {})
    field = "action_params"
    cleaned: dict = {}
    if kind in (Action.NOTIFY_OWNER, Action.NOTIFY_HEADS):
        _only(params, {"message"}, Phrase("a notification"), field)
        if params.get("message") is not None:
            cleaned["message"] = _text(params["message"], "message", 500, field)
    elif kind is Action.CREATE_TASK:
        _only(params, {"title", "due_hours"}, Phrase("a task"), field)
        if params.get("title") is not None:
            cleaned["title"] = _text(params["title"], "title", 200, field)
        cleaned["due_hours"] = (whole_number(params, "due_hours", 0, 24 * 90, field=field)
                                if "due_hours" in params else 24)
    elif kind is Action.SET_PRIORITY:
        _only(params, {"priority"}, Phrase("a priority change"), field)
        value = str(params.get("priority", "")).strip().lower()
        if value.isdigit() and int(value) in _PRIORITIES.values():
            cleaned["priority"] = int(value)
        elif value in _PRIORITIES:
            cleaned["priority"] = _PRIORITIES[value]
        else:
            raise ValidationError("Priority is low, normal or high.", field=field)
    elif kind is Action.MOVE_TO_STAGE:
        _only(params, {"stage_id", "stage", "lost_reason"}, Phrase("a move"), field)
        target = _target_stage(session, params, stage)
        cleaned["stage_id"] = target.id
        if target.kind == StageKind.LOST.value:
            cleaned["lost_reason"] = _text(params.get("lost_reason"), "lost_reason", 500, field)
        elif params.get("lost_reason") is not None:
            raise ValidationError("lost_reason is for a move to a lost stage.", field=field)
    elif kind is Action.REASSIGN:
        _only(params, {"user_id", "login"}, Phrase("a reassignment"), field)
        cleaned["user_id"] = _target_user(session, params).id
    else:
        _only(params, set(), Phrase("a reminder call"), field)
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
        raise ValidationError("“%(name)s” cannot be empty.", name=name, field=field)
    if len(value) > limit:
        raise ValidationError("“%(name)s” is at most %(limit)s characters.", name=name,
                              limit=limit, field=field)
    return value


def _target_stage(session: Session, params: dict, stage: Stage) -> Stage:
    if params.get("stage_id") is not None:
        target = session.get(Stage, whole_number(params, "stage_id", 1, 2**31 - 1,
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
        user = session.get(User, whole_number(params, "user_id", 1, 2**31 - 1,
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
        raise NotFound("No robot rule #%(rule_id)s.", rule_id=rule_id)
    return rule


def create_rule(session: Session, actor: Actor, *, stage_id: int, name: str, condition: str,
                condition_params: dict | None = None, action: str,
                action_params: dict | None = None, active: bool = True,
                now: datetime | None = None) -> RobotRule:
    """A head sets a robot on a stage; the next pass applies it to the deals already there."""
    ensure_head(actor, Phrase("set up robots"))
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
    ensure_head(actor, Phrase("set up robots"))
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
    ensure_head(actor, Phrase("set up robots"))
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
    ensure_head(actor, Phrase("set up robots"))
    rule = get_rule(session, rule_id)
    audit(session, actor, "robot_rule", rule.id, "delete",
          {"name": rule.name, "stage": rule.stage_id}, at=now)
    session.delete(rule)
    session.flush()


def list_rules(session: Session, actor: Actor, pipeline_id: int | None = None
               ) -> list[tuple[RobotRule, Stage]]:
    """Rules with their stages, in board order; every pipeline's when none is given."""
    ensure_head(actor, Phrase("see the robots"))
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
    stage_is_unsorted: bool  # the page names Unsorted in its reader's language


def recent_runs(session: Session, actor: Actor, *, limit: int = 50,
                failed_only: bool = False) -> list[RunView]:
    """The latest robot runs, newest first, failures included (or only them)."""
    ensure_head(actor, Phrase("see the robots' history"))
    if not 1 <= limit <= 1000:
        raise ValidationError("Show 1 to 1000 runs.", field="limit")
    query = (select(RobotRun, RobotRule.name, RobotRule.action, Deal.title, Stage.name,
                    Stage.is_unsorted)
             .join(RobotRule, RobotRule.id == RobotRun.rule_id)
             .join(Deal, Deal.id == RobotRun.deal_id)
             .join(Stage, Stage.id == RobotRule.stage_id))
    if failed_only:
        query = query.where(RobotRun.status == RobotRunStatus.FAILED.value)
    rows = session.exec(query.order_by(RobotRun.fired_at.desc(), RobotRun.id.desc())
                        .limit(limit))
    return [RunView(*row) for row in rows]
