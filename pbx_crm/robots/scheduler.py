"""The robots' clock: APScheduler 3 runs the robot passes in the background.

``pbx-crm robots`` runs this alone; ``serve`` and ``demo`` start it with the other components
(``pbx_crm.components.start_robots``). Three jobs: the pass over every timed rule
(``robot_pass_seconds``), the trigger reader (``robot_trigger_seconds``: answered and
missed calls from the events outbox, deals that just entered a stage), and the task reminders
(``task_reminders``, on the pass's clock: the owner of a task that fell due hears of it once). All robot state lives
in the database (rule watermarks, the events cursor, the runs with their unique keys), so a
restarted scheduler goes on where it stopped, and two schedulers on one PostgreSQL share the
work without doing anything twice. A pass missed while the process was down or busy runs once
when it can (coalesced), within ``robot_grace_minutes``; it catches up on every deal that came
due meanwhile, each once.

This is the wing's edge to the PBX, and its only module that imports the telephony wing: a
reminder call is click-to-call (``call_contact``) over the scheduler's AMI connection, handed
to the passes as their ``ring_owner``. ``robot_pass`` and ``trigger_pass`` here are the passes
as the scheduler runs them.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime

from apscheduler.schedulers.background import BackgroundScheduler

from ..config import Settings
from ..models import utcnow
from ..telephony.ami_client import AmiClient
from ..telephony.click_to_call import call_contact
from . import passes, task_reminders, triggers
from .passes import PassReport, RingOwner
from .task_reminders import ReminderReport

log = logging.getLogger(__name__)

# ``AmiClient.originate`` of a connected client, or a test's stand-in.
Originate = Callable[..., object]


def reminder_caller(settings: Settings, originate: Originate | None) -> RingOwner | None:
    """What rings a deal's owner for a reminder: click-to-call from their extension to the
    deal's contact, over ``originate``. None without one: those runs fail with the reason."""
    if originate is None:
        return None

    def ring_owner(session, owner, deal_id):
        return call_contact(session, owner, deal_id, number=None, originate=originate,
                            settings=settings)

    return ring_owner


def robot_pass(engine, settings: Settings, *, originate: Originate | None = None,
               **options) -> PassReport:
    """``passes.robot_pass`` (same keywords) with reminder calls placed over ``originate``."""
    return passes.robot_pass(engine, settings, ring_owner=reminder_caller(settings, originate),
                             **options)


def trigger_pass(engine, settings: Settings, *, originate: Originate | None = None,
                 **options) -> PassReport:
    """``triggers.trigger_pass`` (same keywords) with reminder calls placed over
    ``originate``."""
    return triggers.trigger_pass(engine, settings,
                                 ring_owner=reminder_caller(settings, originate), **options)


class RobotScheduler:
    """``start()`` it, ``stop()`` it. ``originate`` (a connected ``AmiClient.originate``)
    makes reminder calls; without it those runs fail with a clear reason."""

    def __init__(self, engine, settings: Settings, *, originate=None, ami_client=None):
        self.engine, self.settings = engine, settings
        self.originate = originate
        self._ami_client = ami_client
        self._gaps: dict[int, datetime] = {}
        self._lock = threading.Lock()  # the jobs never overlap inside one process
        self.scheduler = BackgroundScheduler(timezone=UTC)

    def start(self) -> RobotScheduler:
        recovered = passes.recover_interrupted(self.engine)
        if recovered:
            log.warning("%d robot run(s) left pending by a stopped scheduler marked failed",
                        recovered)
        grace = self.settings.robot_grace_minutes * 60
        now = datetime.now(UTC)
        self.scheduler.add_job(self.run_pass, "interval", id="robot-pass",
                                seconds=self.settings.robot_pass_seconds, next_run_time=now,
                                coalesce=True, max_instances=1, misfire_grace_time=grace)
        self.scheduler.add_job(self.run_triggers, "interval", id="robot-triggers",
                                seconds=self.settings.robot_trigger_seconds,
                                next_run_time=now, coalesce=True, max_instances=1,
                                misfire_grace_time=grace)
        self.scheduler.add_job(self.run_reminders, "interval", id="task-reminders",
                                seconds=self.settings.robot_pass_seconds, next_run_time=now,
                                coalesce=True, max_instances=1, misfire_grace_time=grace)
        self.scheduler.start()
        log.info("robots: a pass every %s s, triggers every %s s", self.settings.robot_pass_seconds,
                 self.settings.robot_trigger_seconds)
        return self

    def run_pass(self, now: datetime | None = None) -> PassReport:
        with self._lock:
            report = robot_pass(self.engine, self.settings, now=now or utcnow(),
                                originate=self.originate)
        if report.fired or report.errors:
            log.info("robot pass: %d rule(s), %d run(s) fired, %d failed, %d rule error(s)",
                     report.rules, report.fired, report.failed, report.errors)
        return report

    def run_triggers(self, now: datetime | None = None) -> PassReport:
        with self._lock:
            report = trigger_pass(self.engine, self.settings, now=now or utcnow(),
                                  originate=self.originate, gaps=self._gaps)
        if report.fired:
            log.info("robot triggers: %d event(s), %d run(s) fired, %d failed", report.events,
                     report.fired, report.failed)
        return report

    def run_reminders(self, now: datetime | None = None) -> ReminderReport:
        with self._lock:
            report = task_reminders.remind_due_tasks(self.engine, self.settings,
                                                     now=now or utcnow())
        if report.reminded or report.mail_failures:
            log.info("task reminders: %d task(s) due, %d mailed, %d mail(s) failed",
                     report.reminded, report.mailed, report.mail_failures)
        return report

    def stop(self) -> None:
        if self.scheduler.running:
            self.scheduler.shutdown(wait=True)
        if self._ami_client is not None:
            self._ami_client.close()


def start_robot_scheduler(settings: Settings, engine) -> RobotScheduler:
    """The scheduler, with an AMI session of its own for reminder calls when ``ami_host`` is
    set (it connects in the background; a call before it is up fails that run only)."""
    client = None
    if settings.ami_host:
        client = AmiClient(settings.ami_host, settings.ami_port, settings.ami_username,
                           settings.ami_secret, events="off").start()
    return RobotScheduler(engine, settings, originate=client.originate if client else None,
                          ami_client=client).start()
