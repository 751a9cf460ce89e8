"""The one schema of pbx-crm: its tables, one SQLModel class each, valid on SQLite and PostgreSQL.

``sql/`` holds the rest of it: the migrations in ``sql/migrations`` create exactly these
tables, and the readable DDL dumps show them; a test fails when the classes and the migrations
drift. Enumerations are stored as short strings guarded by CHECK constraints (no native enum
types, so a new value is a one-line migration on both databases). Every timestamp is UTC:
stored naive on SQLite, as ``timestamptz`` on PostgreSQL, and always handed back
timezone-aware.

``base`` (the naming convention, UTC timestamps, JSON, the column helpers), ``people`` (users
and their extensions), ``funnel`` (pipelines, stages, contacts, deals, stage history),
``derived`` (the reports' daily counts and the board's column totals, kept from the other
tables), ``calls`` (and their sellers' legs), ``deal_life`` (timeline, tasks, notifications), ``robots`` (rules, runs,
the trigger reader's cursor), ``plumbing`` (the screen-pop outbox, the audit log), ``sign_in``
(browser sessions, failed sign-ins). This module imports them all, so ``metadata`` is complete
once ``pbx_crm.models`` is imported, and every table is imported from here:
``from pbx_crm.models import Deal, metadata, utcnow``.

May import: ``pbx_crm.enums``, nothing else of pbx-crm: the schema imports nothing from the
wings (no services, no edges, not even ``rules``), so every one of them can use it.
"""

# In the order the tables were always defined in, so that ``metadata`` lists them as before.
from .base import JSONData, UTCDateTime, metadata, utcnow
from .people import User, UserExtension
from .funnel import Contact, ContactPhone, Deal, Pipeline, Stage, StageHistory
from .derived import (
    ReportCallDay,
    ReportCycleBucket,
    ReportDay,
    ReportDayZone,
    ReportStayBucket,
    ReportTeamDay,
    ReportTeamStayBucket,
    StageTotal,
)
from .calls import Call, CallLeg
from .deal_life import Notification, Task, TimelineEntry
from .robots import RobotCursor, RobotRule, RobotRun
from .plumbing import AuditEntry, Event
from .sign_in import LoginFailure, WebSession

__all__ = [
    "AuditEntry",
    "Call",
    "CallLeg",
    "Contact",
    "ContactPhone",
    "Deal",
    "Event",
    "JSONData",
    "LoginFailure",
    "Notification",
    "Pipeline",
    "ReportCallDay",
    "ReportCycleBucket",
    "ReportDay",
    "ReportDayZone",
    "ReportStayBucket",
    "ReportTeamDay",
    "ReportTeamStayBucket",
    "RobotCursor",
    "RobotRule",
    "RobotRun",
    "Stage",
    "StageHistory",
    "StageTotal",
    "Task",
    "TimelineEntry",
    "UTCDateTime",
    "User",
    "UserExtension",
    "WebSession",
    "metadata",
    "utcnow",
]
