"""The robots' passes: find the deals due for each rule, claim a run for each, fire it.

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

The passes take the engine, because each rule gets a transaction of its own. A reminder call
is placed through ``ring_owner``, which the caller passes in: ``scheduler`` makes it from
click-to-call, for this module never imports the telephony wing. ``scheduler`` runs the passes
on a clock, ``triggers`` reuses the claiming and firing for call events; tests call them with
``now``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

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

from ..config import Settings
from ..db import transaction
from ..enums import RobotRunStatus, TimelineKind
from ..errors import CrmError, ValidationError
from ..rules.funnel import Actor
from ..funnel.journal import audit, timeline
from ..people.mailer import send_mail
from ..models import Call, Deal, RobotRule, RobotRun, Stage, User, utcnow
from ..people.language import Words
from ..rules.working_hours import WorkingClock
from .actions import ACTION_WORDS, ACTIONS, ROBOT, AfterCommit
from .rules import TIME_UNITS, TIMED_CONDITIONS, Action, Condition

log = logging.getLogger(__name__)

# Runs claimed per transaction: short, so that on SQLite the PBX hooks never wait long for
# the write lock.
BATCH = 200
# A pending run older than this was left by a scheduler that stopped between its commit and
# the e-mail or call: it is marked failed, not retried (the mail may have gone out).
INTERRUPTED_AFTER = timedelta(minutes=5)


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


# Rings a deal owner's phone for a reminder: ``(session, owner, deal_id)`` -> what it placed
# (``channel``, ``number``, ``action_id``). The scheduler makes one from click-to-call and its
# AMI connection, so that the passes never import the telephony wing.
RingOwner = Callable[[Session, Actor, int], Any]


def dialect_insert(session: Session):
    """The INSERT of the session's database, the one that has ON CONFLICT."""
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


def due_cutoff(rule: RobotRule, now: datetime, clock: WorkingClock) -> datetime | None:
    """The latest value of the condition's time column that makes a deal due at ``now``."""
    params, condition = rule.condition_params, Condition(rule.condition)
    if condition is Condition.TIME_IN_STAGE:
        unit = next(u for u in TIME_UNITS if u in params)
        step = TIME_UNITS[unit][0]
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
        query = query.where(Deal.last_activity_at <= due_cutoff(rule, now, clock))
    return session.exec(query.order_by(RobotRun.id).limit(limit)).all()


def claim_runs(session: Session, rule: RobotRule, rows, now: datetime) -> list[tuple[int, int]]:
    """Insert the runs; a key someone else claimed first is skipped. (run id, deal id)."""
    if not rows:
        return []
    table = RobotRun.__table__
    statement = (dialect_insert(session)(table)
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
               ring_owner: RingOwner | None = None, conditions=TIMED_CONDITIONS,
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
                                  grace=grace, ring_owner=ring_owner, batch=batch,
                                  on_run=on_run))
        except Exception:
            # One broken rule must not stop the others; it is tried again next pass.
            log.exception("robot rule #%s failed; the pass goes on with the other rules",
                          rule_id)
            report.errors += 1
    return report


def _rule_pass(engine, settings: Settings, rule_id: int, *, now: datetime,
               clock: WorkingClock, grace: timedelta, ring_owner: RingOwner | None,
               batch: int, on_run) -> PassReport:
    """One rule: the due deals in batches, then the runs whose snooze is over."""
    report = PassReport(rules=1)
    resume_at = None  # where the previous full batch of this pass stopped
    for step in ("due", "snoozed"):
        while True:
            after: list[AfterCommit] = []
            with transaction(engine) as session:
                rule = _lock_rule(session, rule_id)
                if rule is None:
                    report.skipped_rules += 1
                    return report
                if step == "due":
                    cutoff = due_cutoff(rule, now, clock)
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
                claimed = claim_runs(session, rule, rows, now)
                _fire_all(session, rule, claimed, now=now, settings=settings, report=report,
                          after=after, on_run=on_run)
            deliver_after_commit(engine, settings, after, now=now, ring_owner=ring_owner,
                                 report=report)
            if not full:
                break
    return report


def _fire_all(session: Session, rule: RobotRule, claimed, *, now: datetime,
              settings: Settings, report: PassReport, after: list[AfterCommit],
              on_run) -> None:
    if not claimed:
        return
    rows = session.exec(select(Deal, Stage).join(Stage, Stage.id == Deal.stage_id)
                        .where(Deal.id.in_([deal_id for _, deal_id in claimed]))).all()
    found = {deal.id: (deal, stage) for deal, stage in rows}
    for run_id, deal_id in claimed:
        deal, stage = found[deal_id]
        fire_run(session, rule, run_id, deal, stage, report, after, now=now,
                 settings=settings)
        if on_run is not None:
            on_run(run_id)


def fire_run(session: Session, rule: RobotRule, run_id: int, deal: Deal, stage: Stage,
             report: PassReport, after: list, *, now: datetime, settings: Settings) -> None:
    """Act on one claimed run, counted in the pass's report; what must follow the commit
    (mails, a reminder call) goes to ``after``."""
    report.fired += 1
    report.run_ids.append(run_id)
    pending = _act(session, rule, run_id, deal, stage, now=now, settings=settings)
    if pending is None:
        report.failed += 1
    elif pending.mails or pending.call_owner_id is not None:
        after.append(pending)


def _act(session: Session, rule: RobotRule, run_id: int, deal: Deal, stage: Stage, *,
         now: datetime, settings: Settings) -> AfterCommit | None:
    """Act on one claimed run inside a savepoint; None when the action was refused."""
    pending = AfterCommit(run_id, deal.id)
    action = Action(rule.action)
    try:
        with session.begin_nested():
            did, data = ACTIONS[action](session, rule, deal, stage, pending, now=now,
                                        settings=settings)
            timeline(session, ROBOT, deal.id, TimelineKind.ROBOT,
                     say=Words("%(rule)s: %(did)s", rule=rule.name, did=did),
                     robot_run_id=run_id, at=now,
                     data={"rule_id": rule.id, "action": action.value, **data})
            audit(session, ROBOT, "robot_run", run_id, action.value,
                  {"rule": rule.id, "deal": deal.id, **data}, at=now)
    except Exception as error:
        if isinstance(error, CrmError):
            reason, why = error.message, Words.of(error)
        else:
            log.exception("robot rule #%s on deal #%s failed", rule.id, deal.id)
            reason = why = f"internal error: {type(error).__name__}: {error}"[:500]
        _finish(session, run_id, RobotRunStatus.FAILED, now, reason)
        timeline(session, ROBOT, deal.id, TimelineKind.ROBOT, robot_run_id=run_id, at=now,
                 say=Words("%(rule)s: could not %(action)s: %(reason)s", rule=rule.name,
                           action=ACTION_WORDS[action], reason=why),
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


# --- after the commit: mails and calls ----------------------------------------------------


def deliver_after_commit(engine, settings: Settings, work: list[AfterCommit], *,
                         now: datetime, ring_owner: RingOwner | None,
                         report: PassReport) -> None:
    """Send the mails and ring the owners a committed batch left, then finish its runs:
    done, or failed with what went wrong."""
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
                    if ring_owner is None:
                        raise ValidationError("The scheduler has no AMI connection.")
                    owner = session.get(User, item.call_owner_id)
                    placed = ring_owner(session, Actor.of(owner), item.deal_id)
                    timeline(session, ROBOT, item.deal_id, TimelineKind.ROBOT, at=now,
                             robot_run_id=item.run_id,
                             say=Words("Reminder call: %(channel)s rings, then %(number)s",
                                       channel=placed.channel, number=placed.number),
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
