"""Robot triggers: telephony events and freshly entered stages fire robots at once.

``trigger_pass`` reads the events outbox (``pbx_crm.funnel.events``) from a cursor of its own: an
inbound call answered on a deal fires the stage's "call answered" robots, a missed one its
"call missed" robots, each once per call (the run key names the call). Then it runs the pass
of the "stage entered" robots, so a deal moved into a stage meets them within seconds, not at
the next timed pass. The cursor lives in the database (``robot_cursors``), so a restarted
scheduler goes on where it stopped.

Claiming, firing and the mails and calls after the commit are the passes' own
(``passes``); ``scheduler`` calls ``trigger_pass`` on its clock, tests with ``now``.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlmodel import Session, select

from ..funnel import deals as deal_services
from ..funnel import events
from ..config import Settings
from ..db import transaction
from ..enums import MISSED_DISPOSITIONS
from ..models import Call, Deal, Event, RobotCursor, RobotRule, utcnow
from .actions import AfterCommit
from .passes import (
    PassReport,
    RingOwner,
    claim_runs,
    deliver_after_commit,
    dialect_insert,
    fire_run,
    robot_pass,
)
from .rules import Condition

EVENTS_CURSOR = "events"
# How long a hole in the event ids is waited on before it is taken as a rolled-back write
# (on PostgreSQL a later id can commit before an earlier one).
EVENT_GAP_WAIT = timedelta(seconds=10)


def _lock_cursor(session: Session, name: str, now: datetime) -> RobotCursor:
    """The cursor row, locked; made on first use at the end of the stream (old calls do not
    trigger anything)."""
    start = events.latest_event_id(session)
    session.execute(dialect_insert(session)(RobotCursor.__table__)
                    .values(name=name, position=start, updated_at=now)
                    .on_conflict_do_nothing(index_elements=["name"]))
    return session.exec(select(RobotCursor).where(RobotCursor.name == name)
                        .with_for_update()).one()


def trigger_pass(engine, settings: Settings, *, now: datetime | None = None,
                 ring_owner: RingOwner | None = None, gaps: dict[int, datetime] | None = None,
                 batch: int = 500) -> PassReport:
    """Act on the telephony events since the cursor (answered and missed inbound calls),
    then on the deals that just entered a stage with a "stage entered" robot.

    ``gaps`` remembers (id -> first seen) the holes in the event ids this reader waits on;
    pass the same dict on every call.
    """
    now = now or utcnow()
    gaps = {} if gaps is None else gaps
    report = PassReport()
    after: list[AfterCommit] = []
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
    deliver_after_commit(engine, settings, after, now=now, ring_owner=ring_owner, report=report)
    report.add(robot_pass(engine, settings, now=now, ring_owner=ring_owner,
                          conditions={Condition.STAGE_ENTERED}))
    return report


def _on_call_event(session: Session, kind: str, payload: dict, *, now: datetime,
                   settings: Settings, report: PassReport, after: list[AfterCommit]) -> None:
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
    elif call.disposition in MISSED_DISPOSITIONS:
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
        run_key = f"r{rule.id}:d{deal.id}:c{call.id}"
        claimed = claim_runs(session, rule, [(deal.id, run_key)], now)
        for run_id, _ in claimed:
            fire_run(session, rule, run_id, deal, stage, report, after, now=now,
                     settings=settings)
            session.refresh(deal)
            if deal.stage_id != stage.id:
                return  # moved on: the stage's other triggers no longer apply


def _amount_in_range(rule: RobotRule, deal: Deal) -> bool:
    params = rule.condition_params
    return (params.get("min_amount", 0) <= deal.amount_minor
            and deal.amount_minor <= params.get("max_amount", deal.amount_minor))
