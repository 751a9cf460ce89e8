"""The tables of pbx-crm, one SQLModel class each, valid on SQLite and PostgreSQL.

Migrations in ``sql/migrations`` create exactly these tables; a test fails when the two drift.
Enumerations are stored as short strings guarded by CHECK constraints (no native enum types,
so a new value is a one-line migration on both databases). Every timestamp is UTC: stored
naive on SQLite, as ``timestamptz`` on PostgreSQL, and always handed back timezone-aware.
"""

from __future__ import annotations

import enum
from datetime import UTC, date, datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    false,
    text,
    true,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel

from .enums import (
    CallDirection,
    DealSource,
    Priority,
    RobotRunStatus,
    Role,
    StageKind,
    TaskKind,
    TimelineKind,
)

SQLModel.metadata.naming_convention = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
metadata: MetaData = SQLModel.metadata


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator):
    """A timestamp that goes in as UTC and comes out aware, whatever the database keeps."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; pbx-crm stores aware UTC timestamps only")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


JSONData = JSON().with_variant(JSONB(), "postgresql")


def _checked(column: str, values: type[enum.Enum]) -> CheckConstraint:
    allowed = ", ".join(f"'{member.value}'" for member in values)
    return CheckConstraint(f"{column} IN ({allowed})", name=column)


def _at(nullable: bool = False, **kw):
    """A UTC timestamp column; not-null ones default to now."""
    if nullable:
        return Field(default=None, sa_column=Column(UTCDateTime(), nullable=True, **kw))
    return Field(default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False, **kw))


def _fk(target: str, *, nullable: bool = True, ondelete: str | None = None, index: bool = False):
    return Field(
        default=None,
        sa_column=Column(Integer, ForeignKey(target, ondelete=ondelete), nullable=nullable,
                         index=index),
    )


# --- people -------------------------------------------------------------------------------


class User(SQLModel, table=True):
    __tablename__ = "users"
    __table_args__ = (_checked("role", Role),)

    id: int | None = Field(default=None, primary_key=True)
    login: str = Field(sa_column=Column(String(64), nullable=False, unique=True))
    name: str = Field(sa_column=Column(String(120), nullable=False))
    password_hash: str = Field(sa_column=Column(String(255), nullable=False))
    role: str = Field(sa_column=Column(String(8), nullable=False))
    active: bool = Field(default=True, sa_column=Column(Boolean, nullable=False,
                                                        server_default=true()))
    team: str | None = Field(default=None, sa_column=Column(String(64), nullable=True))
    language: str = Field(default="en", sa_column=Column(String(8), nullable=False,
                                                         server_default="en"))
    time_zone: str | None = Field(default=None, sa_column=Column(String(64), nullable=True))
    # Where robot nudges go by e-mail (when SMTP is configured); empty: in the CRM only.
    email: str | None = Field(default=None, sa_column=Column(String(254), nullable=True))
    created_at: datetime = _at()


class UserExtension(SQLModel, table=True):
    """A phone extension that rings a user; an extension belongs to one user at most."""

    __tablename__ = "user_extensions"

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = _fk("users.id", nullable=False, ondelete="CASCADE", index=True)
    extension: str = Field(sa_column=Column(String(32), nullable=False, unique=True))


# --- the funnel ---------------------------------------------------------------------------


class Pipeline(SQLModel, table=True):
    __tablename__ = "pipelines"
    __table_args__ = (
        Index("uq_pipelines_default", "is_default", unique=True,
              sqlite_where=text("is_default"), postgresql_where=text("is_default")),
    )

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(sa_column=Column(String(120), nullable=False, unique=True))
    position: int = Field(default=0, nullable=False)
    # The pipeline inbound calls land in; the services keep exactly one.
    is_default: bool = Field(default=False, sa_column=Column(Boolean, nullable=False,
                                                            server_default=false()))
    creates_deals_from_calls: bool = Field(default=True, sa_column=Column(
        Boolean, nullable=False, server_default=true()))
    currency: str = Field(sa_column=Column(String(3), nullable=False))
    created_at: datetime = _at()


class Stage(SQLModel, table=True):
    __tablename__ = "stages"
    __table_args__ = (
        _checked("kind", StageKind),
        UniqueConstraint("pipeline_id", "name"),
        # One Unsorted stage per pipeline.
        Index("uq_stages_pipeline_unsorted", "pipeline_id", unique=True,
              sqlite_where=text("is_unsorted"), postgresql_where=text("is_unsorted")),
    )

    id: int | None = Field(default=None, primary_key=True)
    pipeline_id: int = _fk("pipelines.id", nullable=False, ondelete="CASCADE")
    name: str = Field(sa_column=Column(String(120), nullable=False))
    position: int = Field(nullable=False)
    kind: str = Field(sa_column=Column(String(8), nullable=False))
    is_unsorted: bool = Field(default=False, sa_column=Column(Boolean, nullable=False,
                                                             server_default=false()))


class Contact(SQLModel, table=True):
    __tablename__ = "contacts"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(sa_column=Column(String(200), nullable=False))
    company: str | None = Field(default=None, sa_column=Column(String(200), nullable=True))
    email: str | None = Field(default=None, sa_column=Column(String(254), nullable=True))
    owner_id: int | None = _fk("users.id", ondelete="SET NULL", index=True)
    notes: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    created_at: datetime = _at()
    updated_at: datetime = _at()


class ContactPhone(SQLModel, table=True):
    """A contact's number as entered and in E.164; the E.164 index answers "who is calling"."""

    __tablename__ = "contact_phones"
    __table_args__ = (UniqueConstraint("contact_id", "e164"),)

    id: int | None = Field(default=None, primary_key=True)
    contact_id: int = _fk("contacts.id", nullable=False, ondelete="CASCADE")
    raw: str = Field(sa_column=Column(String(64), nullable=False))
    e164: str = Field(sa_column=Column(String(16), nullable=False, index=True))
    label: str | None = Field(default=None, sa_column=Column(String(32), nullable=True))


class Deal(SQLModel, table=True):
    __tablename__ = "deals"
    __table_args__ = (
        _checked("source", DealSource),
        CheckConstraint("priority BETWEEN 0 AND 2", name="priority"),
        CheckConstraint("amount_minor >= 0", name="amount_minor"),
        # The board: a column's cards, newest first, for everyone or for one owner.
        Index("ix_deals_board", "stage_id", "created_at", "id"),
        Index("ix_deals_owner_board", "owner_id", "stage_id", "created_at", "id"),
        # Column totals (count and money per stage), read from the index alone.
        Index("ix_deals_stage_totals", "pipeline_id", "stage_id", "amount_minor"),
        Index("ix_deals_owner_totals", "owner_id", "pipeline_id", "stage_id", "amount_minor"),
        # The robots' due deals: a time window per stage, read as one index range.
        Index("ix_deals_stage_entered", "stage_id", "stage_entered_at"),
        Index("ix_deals_stage_activity", "stage_id", "last_activity_at"),
        # A deal number is read out on the phone: SQLite must never hand out a used one again.
        {"sqlite_autoincrement": True},
    )

    id: int | None = Field(default=None, primary_key=True)
    pipeline_id: int = _fk("pipelines.id", nullable=False)
    stage_id: int = _fk("stages.id", nullable=False)
    title: str = Field(sa_column=Column(String(200), nullable=False))
    amount_minor: int = Field(default=0, sa_column=Column(BigInteger, nullable=False,
                                                          server_default="0"))
    currency: str = Field(sa_column=Column(String(3), nullable=False))
    contact_id: int | None = _fk("contacts.id", ondelete="SET NULL", index=True)
    # Empty while the deal waits in Unsorted for a seller to pick up the phone.
    owner_id: int | None = _fk("users.id", ondelete="SET NULL")
    priority: int = Field(default=Priority.NORMAL.value, sa_column=Column(
        SmallInteger, nullable=False, server_default=str(Priority.NORMAL.value)))
    source: str = Field(sa_column=Column(String(8), nullable=False))
    created_by_id: int | None = _fk("users.id", ondelete="SET NULL")
    created_at: datetime = _at()
    updated_at: datetime = _at()
    stage_entered_at: datetime = _at()
    last_activity_at: datetime = _at()
    closed_at: datetime | None = _at(nullable=True)
    lost_reason: str | None = Field(default=None, sa_column=Column(String(500), nullable=True))
    # Optimistic concurrency: every change bumps it; a change made on an old number is refused.
    version: int = Field(default=1, nullable=False)


class StageHistory(SQLModel, table=True):
    """One row per stage move (and one for creation, with no from-stage).

    ``from_entered_at`` is when the deal entered the stage it leaves, so time in stage and
    conversion come from this table alone, in SQL aggregates.
    """

    __tablename__ = "stage_history"
    __table_args__ = (
        Index("ix_stage_history_deal", "deal_id", "moved_at"),
        # The reports' direct queries over a period (medians): read from the index alone.
        Index("ix_stage_history_period", "pipeline_id", "moved_at", "from_stage_id",
              "to_stage_id", "from_entered_at", "deal_id"),
        # Moves into one stage (won cycles, deals lost from a stage) over a period.
        Index("ix_stage_history_to_stage", "to_stage_id", "moved_at", "deal_id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    deal_id: int = _fk("deals.id", nullable=False, ondelete="CASCADE")
    pipeline_id: int = _fk("pipelines.id", nullable=False)
    from_stage_id: int | None = _fk("stages.id")
    to_stage_id: int = _fk("stages.id", nullable=False)
    from_entered_at: datetime | None = _at(nullable=True)
    moved_at: datetime = _at()
    moved_by_id: int | None = _fk("users.id", ondelete="SET NULL")


class ReportDay(SQLModel, table=True):
    """Stage moves summed per pipeline, local day, stage pair and responsible seller, for the
    funnel reports (kept by ``pbx_crm.reporting.days``); rows are additive, readers sum them."""

    __tablename__ = "report_days"
    __table_args__ = (Index("ix_report_days_pipeline_day", "pipeline_id", "day"),)

    id: int | None = Field(default=None, primary_key=True)
    pipeline_id: int = _fk("pipelines.id", nullable=False, ondelete="CASCADE")
    day: date = Field(sa_column=Column(Date, nullable=False))
    # Empty: the deal's creation in ``to_stage_id``.
    from_stage_id: int | None = _fk("stages.id", ondelete="CASCADE")
    to_stage_id: int = _fk("stages.id", nullable=False, ondelete="CASCADE")
    seller_id: int | None = _fk("users.id", ondelete="SET NULL")
    moves: int = Field(default=0, sa_column=Column(Integer, nullable=False, server_default="0"))
    # Sums over the moves: seconds spent in the stage left, the deals' money, seconds from
    # the deal's creation.
    stay_seconds: int = Field(default=0, sa_column=Column(BigInteger, nullable=False,
                                                          server_default="0"))
    amount_minor: int = Field(default=0, sa_column=Column(BigInteger, nullable=False,
                                                          server_default="0"))
    cycle_seconds: int = Field(default=0, sa_column=Column(BigInteger, nullable=False,
                                                           server_default="0"))


class ReportTeamDay(SQLModel, table=True):
    """``report_days`` summed over the sellers (per pipeline, local day and stage pair): what
    a whole team's report reads, many times fewer rows."""

    __tablename__ = "report_team_days"
    __table_args__ = (Index("ix_report_team_days_pipeline_day", "pipeline_id", "day"),)

    id: int | None = Field(default=None, primary_key=True)
    pipeline_id: int = _fk("pipelines.id", nullable=False, ondelete="CASCADE")
    day: date = Field(sa_column=Column(Date, nullable=False))
    from_stage_id: int | None = _fk("stages.id", ondelete="CASCADE")
    to_stage_id: int = _fk("stages.id", nullable=False, ondelete="CASCADE")
    moves: int = Field(default=0, sa_column=Column(Integer, nullable=False, server_default="0"))
    stay_seconds: int = Field(default=0, sa_column=Column(BigInteger, nullable=False,
                                                          server_default="0"))
    amount_minor: int = Field(default=0, sa_column=Column(BigInteger, nullable=False,
                                                          server_default="0"))
    cycle_seconds: int = Field(default=0, sa_column=Column(BigInteger, nullable=False,
                                                           server_default="0"))


class ReportStayBucket(SQLModel, table=True):
    """Moves out of a stage per pipeline, local day, stage left, seller and bucket of the
    time spent in it (``pbx_crm.reporting.days.DURATION_BUCKETS``): the long periods' medians."""

    __tablename__ = "report_stay_buckets"
    __table_args__ = (Index("ix_report_stay_buckets_pipeline_day", "pipeline_id", "day"),)

    id: int | None = Field(default=None, primary_key=True)
    pipeline_id: int = _fk("pipelines.id", nullable=False, ondelete="CASCADE")
    day: date = Field(sa_column=Column(Date, nullable=False))
    stage_id: int = _fk("stages.id", nullable=False, ondelete="CASCADE")
    seller_id: int | None = _fk("users.id", ondelete="SET NULL")
    bucket: int = Field(sa_column=Column(SmallInteger, nullable=False))
    moves: int = Field(default=0, sa_column=Column(Integer, nullable=False, server_default="0"))


class ReportTeamStayBucket(SQLModel, table=True):
    """``report_stay_buckets`` summed over the sellers (per pipeline, local day, stage left
    and bucket): what a whole team's long report reads, many times fewer rows."""

    __tablename__ = "report_team_stay_buckets"
    # Covers the report's read (a pipeline's days, summed per stage and bucket): index only.
    __table_args__ = (Index("ix_report_team_stay_buckets_read", "pipeline_id", "day",
                            "stage_id", "bucket", "moves"),)

    id: int | None = Field(default=None, primary_key=True)
    pipeline_id: int = _fk("pipelines.id", nullable=False, ondelete="CASCADE")
    day: date = Field(sa_column=Column(Date, nullable=False))
    stage_id: int = _fk("stages.id", nullable=False, ondelete="CASCADE")
    bucket: int = Field(sa_column=Column(SmallInteger, nullable=False))
    moves: int = Field(default=0, sa_column=Column(Integer, nullable=False, server_default="0"))


class ReportCycleBucket(SQLModel, table=True):
    """Wins per pipeline, local day, seller and bucket of creation-to-win time."""

    __tablename__ = "report_cycle_buckets"
    __table_args__ = (Index("ix_report_cycle_buckets_pipeline_day", "pipeline_id", "day"),)

    id: int | None = Field(default=None, primary_key=True)
    pipeline_id: int = _fk("pipelines.id", nullable=False, ondelete="CASCADE")
    day: date = Field(sa_column=Column(Date, nullable=False))
    seller_id: int | None = _fk("users.id", ondelete="SET NULL")
    bucket: int = Field(sa_column=Column(SmallInteger, nullable=False))
    wins: int = Field(default=0, sa_column=Column(Integer, nullable=False, server_default="0"))


class ReportCallDay(SQLModel, table=True):
    """Calls on deals per pipeline, local day, the deal's stage when it rang and seller: the
    calls, the outbound ones, and the deals called that day in that stage."""

    __tablename__ = "report_call_days"
    __table_args__ = (Index("ix_report_call_days_pipeline_day", "pipeline_id", "day"),)

    id: int | None = Field(default=None, primary_key=True)
    pipeline_id: int = _fk("pipelines.id", nullable=False, ondelete="CASCADE")
    day: date = Field(sa_column=Column(Date, nullable=False))
    stage_id: int = _fk("stages.id", nullable=False, ondelete="CASCADE")
    seller_id: int | None = _fk("users.id", ondelete="SET NULL")
    calls: int = Field(default=0, sa_column=Column(Integer, nullable=False, server_default="0"))
    outbound: int = Field(default=0, sa_column=Column(Integer, nullable=False,
                                                      server_default="0"))
    deals_called: int = Field(default=0, sa_column=Column(Integer, nullable=False,
                                                          server_default="0"))


class StageTotal(SQLModel, table=True):
    """The board's column totals: deals and money per pipeline, stage and owner (kept by
    ``pbx_crm.funnel.stage_totals``). ``owner_key`` 0 stands for nobody (the Unsorted deals): a
    primary key column cannot be NULL, and the key is what the additive upsert matches."""

    __tablename__ = "stage_totals"

    pipeline_id: int = Field(sa_column=Column(
        Integer, ForeignKey("pipelines.id", ondelete="CASCADE"), primary_key=True))
    stage_id: int = Field(sa_column=Column(
        Integer, ForeignKey("stages.id", ondelete="CASCADE"), primary_key=True))
    owner_key: int = Field(sa_column=Column(Integer, primary_key=True, autoincrement=False))
    deals: int = Field(default=0, sa_column=Column(Integer, nullable=False, server_default="0"))
    amount_minor: int = Field(default=0, sa_column=Column(BigInteger, nullable=False,
                                                          server_default="0"))


class ReportDayZone(SQLModel, table=True):
    """The time zone ``report_days`` counts local days in (one row; none: not kept)."""

    __tablename__ = "report_day_zone"

    id: int | None = Field(default=None, primary_key=True)
    time_zone: str = Field(sa_column=Column(String(64), nullable=False))


# --- telephony ----------------------------------------------------------------------------


_MISSED_INBOUND = "direction = 'inbound' AND disposition IN ('missed', 'abandoned')"


class Call(SQLModel, table=True):
    """One call as the PBX saw it, keyed by the Asterisk channel uniqueid."""

    __tablename__ = "calls"
    __table_args__ = (
        _checked("direction", CallDirection),
        CheckConstraint("disposition IS NULL OR disposition IN "
                        "('answered', 'missed', 'abandoned', 'busy', 'failed')",
                        name="disposition"),
        # The robots' "missed call not returned": missed inbound calls by when they ended.
        Index("ix_calls_missed_ended", "ended_at", sqlite_where=text(_MISSED_INBOUND),
              postgresql_where=text(_MISSED_INBOUND)),
    )

    id: int | None = Field(default=None, primary_key=True)
    uniqueid: str = Field(sa_column=Column(String(64), nullable=False, unique=True))
    linkedid: str = Field(sa_column=Column(String(64), nullable=False, index=True))
    direction: str = Field(sa_column=Column(String(8), nullable=False))
    caller_raw: str = Field(default="", sa_column=Column(String(80), nullable=False,
                                                         server_default=""))
    caller_e164: str | None = Field(default=None, sa_column=Column(String(16), nullable=True,
                                                                   index=True))
    caller_name: str | None = Field(default=None, sa_column=Column(String(200), nullable=True))
    did: str | None = Field(default=None, sa_column=Column(String(64), nullable=True))
    dialed_raw: str | None = Field(default=None, sa_column=Column(String(80), nullable=True))
    # Comma-separated extensions the call rang (ring groups ring several).
    rung_extensions: str | None = Field(default=None, sa_column=Column(String(500),
                                                                       nullable=True))
    answered_exten: str | None = Field(default=None, sa_column=Column(String(32), nullable=True))
    answered_by_id: int | None = _fk("users.id", ondelete="SET NULL")
    ringing_at: datetime = _at()
    answered_at: datetime | None = _at(nullable=True)
    ended_at: datetime | None = _at(nullable=True)
    disposition: str | None = Field(default=None, sa_column=Column(String(10), nullable=True))
    hangup_cause: int | None = Field(default=None, nullable=True)
    recording_ref: str | None = Field(default=None, sa_column=Column(String(500), nullable=True))
    deal_id: int | None = _fk("deals.id", ondelete="SET NULL", index=True)
    contact_id: int | None = _fk("contacts.id", ondelete="SET NULL", index=True)


# --- the deal's life ----------------------------------------------------------------------


class TimelineEntry(SQLModel, table=True):
    __tablename__ = "timeline_entries"
    __table_args__ = (
        _checked("kind", TimelineKind),
        Index("ix_timeline_entries_deal", "deal_id", "created_at"),
        # Deleting a robot rule clears its runs from the timeline: without this, one scan of
        # the whole timeline per run.
        Index("ix_timeline_entries_robot_run", "robot_run_id",
              sqlite_where=text("robot_run_id IS NOT NULL"),
              postgresql_where=text("robot_run_id IS NOT NULL")),
    )

    id: int | None = Field(default=None, primary_key=True)
    deal_id: int = _fk("deals.id", nullable=False, ondelete="CASCADE")
    kind: str = Field(sa_column=Column(String(12), nullable=False))
    created_at: datetime = _at()
    author_id: int | None = _fk("users.id", ondelete="SET NULL")
    body: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    call_id: int | None = _fk("calls.id", ondelete="SET NULL")
    robot_run_id: int | None = _fk("robot_runs.id", ondelete="SET NULL")
    data: dict | None = Field(default=None, sa_column=Column(JSONData, nullable=True))


class Task(SQLModel, table=True):
    __tablename__ = "tasks"
    __table_args__ = (
        _checked("kind", TaskKind),
        Index("ix_tasks_assignee_open", "assignee_id", "done_at", "due_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    deal_id: int | None = _fk("deals.id", ondelete="CASCADE", index=True)
    # Empty: the task waits in the Unsorted queue for whoever takes it.
    assignee_id: int | None = _fk("users.id", ondelete="SET NULL")
    title: str = Field(sa_column=Column(String(200), nullable=False))
    kind: str = Field(sa_column=Column(String(8), nullable=False))
    due_at: datetime | None = _at(nullable=True)
    done_at: datetime | None = _at(nullable=True)
    done_by_id: int | None = _fk("users.id", ondelete="SET NULL")
    call_id: int | None = _fk("calls.id", ondelete="SET NULL")
    created_by_id: int | None = _fk("users.id", ondelete="SET NULL")
    created_at: datetime = _at()


class Notification(SQLModel, table=True):
    __tablename__ = "notifications"
    __table_args__ = (
        Index("ix_notifications_user_unread", "user_id", "read_at"),
        Index("ix_notifications_robot_run", "robot_run_id",
              sqlite_where=text("robot_run_id IS NOT NULL"),
              postgresql_where=text("robot_run_id IS NOT NULL")),
    )

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = _fk("users.id", nullable=False, ondelete="CASCADE")
    kind: str = Field(sa_column=Column(String(32), nullable=False))
    body: str = Field(sa_column=Column(Text, nullable=False))
    deal_id: int | None = _fk("deals.id", ondelete="CASCADE", index=True)
    robot_run_id: int | None = _fk("robot_runs.id", ondelete="SET NULL")
    created_at: datetime = _at()
    read_at: datetime | None = _at(nullable=True)


# --- robots -------------------------------------------------------------------------------


class RobotRule(SQLModel, table=True):
    """A stage's robot: when ``condition`` holds for a deal in the stage, do ``action``."""

    __tablename__ = "robot_rules"

    id: int | None = Field(default=None, primary_key=True)
    stage_id: int = _fk("stages.id", nullable=False, ondelete="CASCADE", index=True)
    name: str = Field(sa_column=Column(String(120), nullable=False))
    active: bool = Field(default=True, sa_column=Column(Boolean, nullable=False,
                                                        server_default=true()))
    condition: str = Field(sa_column=Column(String(32), nullable=False))
    condition_params: dict = Field(default_factory=dict,
                                   sa_column=Column(JSONData, nullable=False))
    action: str = Field(sa_column=Column(String(32), nullable=False))
    action_params: dict = Field(default_factory=dict, sa_column=Column(JSONData, nullable=False))
    created_by_id: int | None = _fk("users.id", ondelete="SET NULL")
    created_at: datetime = _at()
    # How far the scheduler has looked (in the condition's own time column); empty: not yet,
    # so the first pass takes every deal already due, not only new arrivals.
    checked_until: datetime | None = _at(nullable=True)


class RobotRun(SQLModel, table=True):
    """One firing of a rule on a deal; ``run_key`` makes it fire once per stage visit."""

    __tablename__ = "robot_runs"
    __table_args__ = (
        _checked("status", RobotRunStatus),
        CheckConstraint("answer IS NULL OR answer IN ('moved_on', 'lower_priority', 'snooze')",
                        name="answer"),
        Index("ix_robot_runs_fired", "fired_at"),
        Index("ix_robot_runs_snoozed", "rule_id", "snooze_until",
              sqlite_where=text("snooze_until IS NOT NULL"),
              postgresql_where=text("snooze_until IS NOT NULL")),
    )

    id: int | None = Field(default=None, primary_key=True)
    rule_id: int = _fk("robot_rules.id", nullable=False, ondelete="CASCADE", index=True)
    deal_id: int = _fk("deals.id", nullable=False, ondelete="CASCADE", index=True)
    run_key: str = Field(sa_column=Column(String(200), nullable=False, unique=True))
    status: str = Field(sa_column=Column(String(8), nullable=False))
    fired_at: datetime = _at()
    finished_at: datetime | None = _at(nullable=True)
    error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    answer: str | None = Field(default=None, sa_column=Column(String(16), nullable=True))
    answered_at: datetime | None = _at(nullable=True)
    answered_by_id: int | None = _fk("users.id", ondelete="SET NULL")
    snooze_until: datetime | None = _at(nullable=True)


class RobotCursor(SQLModel, table=True):
    """Where the robots' trigger reader stands in a stream (the events outbox), so that a
    restarted scheduler goes on from there and no event triggers twice."""

    __tablename__ = "robot_cursors"

    name: str = Field(sa_column=Column(String(64), primary_key=True))
    position: int = Field(default=0, sa_column=Column(BigInteger, nullable=False,
                                                      server_default="0"))
    updated_at: datetime = _at()


# --- plumbing -----------------------------------------------------------------------------


class Event(SQLModel, table=True):
    """The outbox the telephony processes write and the web process delivers (screen-pops).

    The id is the stream position a reconnecting browser resumes from (Last-Event-ID).
    """

    __tablename__ = "events"
    __table_args__ = (
        # A call's pops, asked for on every ring and answer: who was told already?
        Index("ix_events_call", "linkedid", "kind"),
        # Browsers resume from the last id they saw, so an id is never reused.
        {"sqlite_autoincrement": True},
    )

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(sa_column=Column(String(32), nullable=False))
    # Empty: for heads only (they watch all); otherwise the seller whose phone it concerns.
    target_user_id: int | None = _fk("users.id", ondelete="CASCADE", index=True)
    deal_id: int | None = _fk("deals.id", ondelete="SET NULL", index=True)
    linkedid: str | None = Field(default=None, sa_column=Column(String(64), nullable=True))
    payload: dict = Field(default_factory=dict, sa_column=Column(JSONData, nullable=False))
    created_at: datetime = _at(index=True)


class AuditEntry(SQLModel, table=True):
    """Who changed what: one row per change made through the services."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_entity", "entity", "entity_id"),)

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = _at()
    user_id: int | None = _fk("users.id", ondelete="SET NULL")
    # Who acted when no user did: "pbx", "robot", "cli"; the user's login otherwise.
    actor: str = Field(sa_column=Column(String(64), nullable=False))
    entity: str = Field(sa_column=Column(String(32), nullable=False))
    entity_id: int = Field(nullable=False)
    action: str = Field(sa_column=Column(String(32), nullable=False))
    changes: dict = Field(default_factory=dict, sa_column=Column(JSONData, nullable=False))


# --- the web UI ---------------------------------------------------------------------------


class WebSession(SQLModel, table=True):
    """A signed-in browser. The cookie holds a random token; only its SHA-256 is stored, so a
    copy of the table signs nobody in. Every web worker process reads the same rows."""

    __tablename__ = "web_sessions"

    id: int | None = Field(default=None, primary_key=True)
    token_hash: str = Field(sa_column=Column(String(64), nullable=False, unique=True))
    user_id: int = _fk("users.id", nullable=False, ondelete="CASCADE", index=True)
    # Sent back with every state-changing request (form field or header).
    csrf_token: str = Field(sa_column=Column(String(64), nullable=False))
    created_at: datetime = _at()
    last_seen_at: datetime = _at()
    expires_at: datetime = _at(index=True)


class LoginFailure(SQLModel, table=True):
    """One failed sign-in, counted per login and per address to slow down password guessing."""

    __tablename__ = "login_failures"
    __table_args__ = (
        Index("ix_login_failures_login", "login", "at"),
        Index("ix_login_failures_address", "address", "at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    login: str = Field(sa_column=Column(String(64), nullable=False))
    address: str = Field(sa_column=Column(String(64), nullable=False))
    at: datetime = _at()
