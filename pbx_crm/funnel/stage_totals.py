"""The board's column totals, kept exact: deals and money per pipeline, stage and owner.

``stage_totals`` holds one row per (pipeline, stage, owner) with the number of deals in that
stage and the sum of their amounts (``owner_key`` 0: nobody's, the Unsorted deals). A head's
column total sums a stage's rows over the owners; a seller's sums their own row and nobody's.
The board reads a few dozen rows instead of counting a million deals.

Kept by the deal services: ``pbx_crm.funnel.deals`` calls ``deal_added`` when it creates a deal and
``deal_changed`` after every UPDATE that may change a deal's stage, owner or amount (moves,
takes, assignments, closing, reopening, amount edits), with what the deal counted as before.
Each change is an additive upsert per touched key, the keys taken in one fixed order, so two
moves between the same columns lock the same rows in the same order on PostgreSQL and never
deadlock. ``rebuild`` recounts the table from ``deals`` in bulk (the migration that adds the
table, ``pbx-crm seed``, ``pbx-crm board rebuild-totals``).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import case, delete, func, insert, literal, select, text
from sqlalchemy.dialects import postgresql, sqlite

from ..models import Deal, StageTotal

totals = StageTotal.__table__
deals = Deal.__table__
NOBODY = 0


@dataclass(frozen=True)
class Counted:
    """Where a deal counts: its column and owner, and how much money it adds."""

    pipeline_id: int
    stage_id: int
    owner_id: int | None
    amount_minor: int


def counted(deal: Deal) -> Counted:
    return Counted(deal.pipeline_id, deal.stage_id, deal.owner_id, deal.amount_minor)


def _key(place: Counted) -> tuple[int, int, int]:
    return (place.pipeline_id, place.stage_id,
            NOBODY if place.owner_id is None else place.owner_id)


def _upsert(dialect: str):
    make = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = make(totals)
    return statement.on_conflict_do_update(
        index_elements=[totals.c.pipeline_id, totals.c.stage_id, totals.c.owner_key],
        set_={"deals": totals.c.deals + statement.excluded.deals,
              "amount_minor": totals.c.amount_minor + statement.excluded.amount_minor})


def _dialect(session) -> str:
    """The database's dialect name, from a session or (in a migration) a connection."""
    return (session.dialect if hasattr(session, "dialect")
            else session.get_bind().dialect).name


_UPSERTS = {dialect: _upsert(dialect) for dialect in ("postgresql", "sqlite")}


def _apply(session, deltas: dict[tuple[int, int, int], tuple[int, int]]) -> None:
    """Add each (deals, money) delta to its key's row, creating it, in key order."""
    rows = [{"pipeline_id": key[0], "stage_id": key[1], "owner_key": key[2],
             "deals": change[0], "amount_minor": change[1]}
            for key, change in sorted(deltas.items()) if any(change)]
    statement = _UPSERTS[_dialect(session)]
    # One statement per row, not one executemany: the order of the row locks is the order
    # of the list on either database.
    for row in rows:
        session.execute(statement, row)


def deal_added(session, deal: Deal) -> None:
    """Count a new deal in its column."""
    _apply(session, {_key(counted(deal)): (1, deal.amount_minor)})


def deal_changed(session, before: Counted, deal: Deal) -> None:
    """Move a deal's count from where it counted (``before``) to where it counts now."""
    after = counted(deal)
    if after == before:
        return
    deltas: dict = {}
    for place, sign in ((before, -1), (after, 1)):
        deals_now, money_now = deltas.get(_key(place), (0, 0))
        deltas[_key(place)] = (deals_now + sign, money_now + sign * place.amount_minor)
    _apply(session, deltas)


# --- reading ------------------------------------------------------------------------------


def column_totals(session, pipeline_id: int, *, owner_id: int | None,
                  nobodys: bool = True) -> dict[int, tuple]:
    """stage id -> (deals, money) of a pipeline: everyone's (``owner_id`` None) or one
    seller's plus nobody's (the Unsorted deals every board shows; ``nobodys`` False: the
    seller's alone, as their report counts them)."""
    query = select(totals.c.stage_id, func.sum(totals.c.deals), func.sum(totals.c.amount_minor)) \
        .where(totals.c.pipeline_id == pipeline_id)
    if owner_id is not None:
        query = query.where(totals.c.owner_key.in_([owner_id, NOBODY] if nobodys else [owner_id]))
    query = query.group_by(totals.c.stage_id).having(func.sum(totals.c.deals) != 0)
    return {stage_id: (int(count), int(money))
            for stage_id, count, money in session.execute(query)}


# --- rebuilding ---------------------------------------------------------------------------


def counted_from_deals(pipeline_id: int | None = None):
    """The table's rows counted afresh from ``deals`` (a SELECT of the table's columns)."""
    owner_key = case((deals.c.owner_id.is_(None), literal(NOBODY)), else_=deals.c.owner_id)
    query = (select(deals.c.pipeline_id, deals.c.stage_id, owner_key.label("owner_key"),
                    func.count().label("deals"),
                    func.coalesce(func.sum(deals.c.amount_minor), 0).label("amount_minor"))
             .group_by(deals.c.pipeline_id, deals.c.stage_id, owner_key))
    if pipeline_id is not None:
        query = query.where(deals.c.pipeline_id == pipeline_id)
    return query


def rebuild(session, *, pipeline_id: int | None = None) -> int:
    """Recount the table (one pipeline's rows, or all) from ``deals``; the rows written.

    On PostgreSQL the table is locked against writers first: a deal change that already
    added to it commits before the recount reads ``deals``; one that has not waits and adds
    to the recounted rows. (SQLite has one writer at a time anyway.)"""
    if _dialect(session) == "postgresql":
        session.execute(text("LOCK TABLE stage_totals IN EXCLUSIVE MODE"))
    wipe = delete(totals)
    if pipeline_id is not None:
        wipe = wipe.where(totals.c.pipeline_id == pipeline_id)
    session.execute(wipe)
    session.execute(insert(totals).from_select(
        ["pipeline_id", "stage_id", "owner_key", "deals", "amount_minor"],
        counted_from_deals(pipeline_id)))
    # Counted afterwards: an INSERT ... SELECT's rowcount is not reported by every driver.
    written = select(func.count()).select_from(totals)
    if pipeline_id is not None:
        written = written.where(totals.c.pipeline_id == pipeline_id)
    return session.execute(written).scalar()
