"""Tables kept from the others, and rebuilt from them: the reports' days, the board's totals."""

from __future__ import annotations

from datetime import date

from sqlalchemy import BigInteger, Column, Date, ForeignKey, Index, Integer, SmallInteger, String
from sqlmodel import Field, SQLModel

from .base import _fk


class ReportDay(SQLModel, table=True):
    """Stage moves summed per pipeline, local day, stage pair and responsible seller, for the
    funnel reports (kept by ``pbx_crm.reporting.days``); rows are additive, readers sum them."""

    __tablename__ = "report_days"
    # Covers the reads, in the order they sum (a pipeline's moves per seller and stage pair):
    # SQLite walks it without sorting the period's rows, and finds the row a move adds to.
    __table_args__ = (Index("ix_report_days_read", "pipeline_id", "seller_id", "from_stage_id",
                            "to_stage_id", "day", "moves", "stay_seconds", "amount_minor",
                            "cycle_seconds"),)

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
    # Covers the report's read in the order it sums (a pipeline's moves per stage and bucket):
    # index only, and SQLite sums it without sorting the period's rows.
    __table_args__ = (Index("ix_report_team_stay_buckets_read", "pipeline_id", "stage_id",
                            "bucket", "day", "moves"),)

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
    calls, the outbound ones, the deals called that day in that stage, and the inbound calls
    that ended missed or abandoned (counted when they end)."""

    __tablename__ = "report_call_days"
    # Covers the read in the order it sums (a pipeline's calls per stage), as report_days's.
    __table_args__ = (Index("ix_report_call_days_read", "pipeline_id", "stage_id", "day",
                            "seller_id", "calls", "outbound", "missed", "deals_called"),)

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
    missed: int = Field(default=0, sa_column=Column(Integer, nullable=False, server_default="0"))


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
