"""The queries behind the Kanban board: a column's cards, and each column's count and money.

A column is read newest first, a page at a time ("show more" passes the last card's
``(created_at, id)``), so a pipeline with 100k deals costs one short index range per column.
A seller's board holds their own deals plus the shared Unsorted column, whose cards also
carry the number's calls: how many, how many missed, and since when it waits for a call back.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import (
    Integer,
    and_,
    bindparam,
    cast,
    column,
    exists,
    func,
    literal,
    null,
    or_,
    table,
    tuple_,
    union,
    union_all,
)
from sqlalchemy.orm import aliased
from sqlmodel import Session, select

from . import stage_totals
from ..enums import CallDirection, Disposition, RobotRunStatus
from ..errors import ValidationError
from ..rules.funnel import Actor
from ..models import Call, Contact, ContactPhone, Deal, RobotRule, RobotRun, Stage, Task, User
from ..rules.phones import normalize_number

PAGE_SIZE = 50


@dataclass(frozen=True)
class ColumnTotal:
    stage_id: int
    deals: int
    amount_minor: int


def _owner_shown(actor: Actor, owner_id: int | None) -> int | None:
    """Whose cards fill the working columns: a seller's own, or the seller a head filters on
    (None: everyone's). Unsorted deals are nobody's yet and show on every board."""
    return owner_id if actor.sees_everything else actor.user_id


def column_cards(session: Session, actor: Actor, stage: Stage, *, owner_id: int | None = None,
                 after: tuple[datetime, int] | None = None,
                 limit: int = PAGE_SIZE) -> list[Deal]:
    """One column's cards, newest first; ``after`` continues from the last card shown."""
    query = _column_page(select(Deal), actor, stage, owner_id=owner_id, after=after,
                         limit=limit)
    return list(session.exec(query))


def _column_page(query, actor: Actor, stage: Stage, *, owner_id: int | None,
                 after: tuple[datetime, int] | None, limit: int):
    query = query.where(Deal.stage_id == stage.id)
    shown = _owner_shown(actor, owner_id)
    if stage.is_unsorted:
        query = query.where(Deal.owner_id.is_(None))
    elif shown is not None:
        query = query.where(Deal.owner_id == shown)
    if after is not None:
        # A row-value comparison: one index range, where an OR of two terms scans.
        query = query.where(tuple_(Deal.created_at, Deal.id) < tuple_(*after))
    return query.order_by(Deal.created_at.desc(), Deal.id.desc()).limit(limit)


def column_totals(session: Session, actor: Actor, pipeline_id: int, *,
                  owner_id: int | None = None) -> dict[int, ColumnTotal]:
    """Count and money per stage of a pipeline, as the actor's board shows them: read from
    the totals the deal services keep (``pbx_crm.funnel.stage_totals``), a few dozen rows at most."""
    kept = stage_totals.column_totals(session, pipeline_id,
                                      owner_id=_owner_shown(actor, owner_id))
    return {stage_id: ColumnTotal(stage_id, count, money)
            for stage_id, (count, money) in kept.items()}


# --- cards as the page shows them ---------------------------------------------------------

# A robot nudge still waiting for an answer, fired during the deal's current stage visit.
_overdue = (exists().where(RobotRun.deal_id == Deal.id, RobotRun.rule_id == RobotRule.id,
                           RobotRule.stage_id == Deal.stage_id,
                           RobotRun.fired_at >= Deal.stage_entered_at,
                           RobotRun.answer.is_(None),
                           # Two comparisons, not NOT IN: an IN list is re-rendered into the
                           # SQL on every execution, which cost more than the query itself.
                           RobotRun.status != RobotRunStatus.FAILED.value,
                           RobotRun.status != RobotRunStatus.SKIPPED.value)
            .correlate(Deal))

# The deal's next open task: the soonest due, then the undated ones (one index lookup a card).
_next_task_id = (select(Task.id).where(Task.deal_id == Deal.id, Task.done_at.is_(None))
                 .order_by(Task.due_at.is_(None), Task.due_at, Task.id)
                 .limit(literal(1, literal_execute=True))
                 .correlate(Deal).scalar_subquery())
_next_task = Task.__table__.alias("next_task")

_CARD_COLUMNS = (Deal.id, Deal.title, Deal.amount_minor, Deal.currency, Deal.priority,
                 Deal.created_at, Deal.stage_entered_at, Deal.version, Deal.owner_id,
                 Deal.stage_id, Contact.name.label("contact_name"),
                 User.name.label("owner_name"), _overdue.label("overdue"),
                 _next_task.c.title.label("next_task_title"),
                 _next_task.c.due_at.label("next_task_due"),
                 _next_task.c.kind.label("next_task_kind"),
                 _next_task.c.phone.label("next_task_phone"),
                 _next_task.c.missed_calls.label("next_task_calls"))

# An Unsorted card's calls, each read through the calls' deal index: how many times the
# number called, how many of those were missed, and since when it waits for a call back.
_INBOUND = CallDirection.INBOUND.value
_MISSED = (Disposition.MISSED.value, Disposition.ABANDONED.value)
_reached = aliased(Call, name="reached")
_calls_in = (select(func.count()).where(Call.deal_id == Deal.id, Call.direction == _INBOUND)
             .correlate(Deal).scalar_subquery())
_missed_in = (select(func.count()).where(Call.deal_id == Deal.id, Call.direction == _INBOUND,
                                         Call.disposition.in_(_MISSED))
              .correlate(Deal).scalar_subquery())
# The wait starts at the first missed call that nobody returned: no answered call and no
# outbound call after it (as the callback report measures each missed call). None: nothing
# waits, the number was reached after its last missed call.
_waiting_since = (select(func.min(Call.ringing_at))
                  .where(Call.deal_id == Deal.id, Call.direction == _INBOUND,
                         Call.disposition.in_(_MISSED),
                         ~exists().where(_reached.deal_id == Call.deal_id,
                                         _reached.ringing_at > Call.ringing_at,
                                         or_(_reached.direction == CallDirection.OUTBOUND.value,
                                             _reached.disposition
                                             == Disposition.ANSWERED.value)))
                  .correlate(Deal).scalar_subquery())
_CALL_COLUMNS = (_calls_in.label("calls"), _missed_in.label("missed_calls"),
                 _waiting_since.label("waiting_since"))
# The other cards: the same columns, empty (typed, so that PostgreSQL unites the pages).
_NO_CALL_COLUMNS = (cast(null(), Integer).label("calls"),
                    cast(null(), Integer).label("missed_calls"),
                    cast(null(), Call.__table__.c.ringing_at.type).label("waiting_since"))


def _card_select(with_calls: bool):
    return (select(*_CARD_COLUMNS, *(_CALL_COLUMNS if with_calls else _NO_CALL_COLUMNS))
            .select_from(Deal)
            .outerjoin(Contact, Contact.id == Deal.contact_id)
            .outerjoin(User, User.id == Deal.owner_id)
            .outerjoin(_next_task, _next_task.c.id == _next_task_id))


_card = _card_select(False)
_unsorted_card = _card_select(True)


def _card_page(whose: str, continued: bool):
    """One column page of cards as a statement built once, its values bound per call: a
    board reads nine columns, and building and compiling nine selects per page load cost
    more than running them."""
    query = (_unsorted_card if whose == "nobody" else _card).where(
        Deal.stage_id == bindparam("stage_id"))
    if whose == "nobody":
        query = query.where(Deal.owner_id.is_(None))
    elif whose == "one":
        query = query.where(Deal.owner_id == bindparam("owner_id"))
    if continued:
        query = query.where(tuple_(Deal.created_at, Deal.id) < tuple_(
            bindparam("after_at", type_=Deal.__table__.c.created_at.type),
            bindparam("after_id")))
    return query.order_by(Deal.created_at.desc(), Deal.id.desc()).limit(bindparam("limit"))


_CARD_PAGES = {(whose, continued): _card_page(whose, continued)
               for whose in ("nobody", "one", "everyone") for continued in (False, True)}


def column_card_rows(session: Session, actor: Actor, stage: Stage, *,
                     owner_id: int | None = None, after: tuple[datetime, int] | None = None,
                     limit: int = PAGE_SIZE) -> list:
    """``column_cards`` as plain rows with what a card shows (contact, owner, overdue mark):
    no ORM objects to build, which is most of a board's cost."""
    shown = _owner_shown(actor, owner_id)
    whose = _whose(actor, stage, owner_id)
    values = {"stage_id": stage.id, "owner_id": shown, "limit": limit}
    if after is not None:
        values["after_at"], values["after_id"] = after
    # Through the connection: the ORM layer adds nothing to plain rows but its own cost.
    return list(session.connection().execute(_CARD_PAGES[whose, after is not None],
                                             {k: v for k, v in values.items()
                                              if whose == "one" or k != "owner_id"}))


def _whose(actor: Actor, stage: Stage, owner_id: int | None) -> str:
    shown = _owner_shown(actor, owner_id)
    return "nobody" if stage.is_unsorted else "everyone" if shown is None else "one"


@functools.lru_cache(maxsize=64)
def _first_pages(kinds: tuple[str, ...], limit: int):
    """The first page of every column in one statement (``UNION ALL`` of the column pages,
    each still one short index range): on PostgreSQL each statement is a round trip, and a
    board has nine columns. Built once per shape of board (which columns are whose). The
    limit is written into the SQL: PostgreSQL then keeps one plan for the statement instead
    of planning nine joins on every load (a bound LIMIT makes its generic plan a scan)."""
    pages = []
    for n, whose in enumerate(kinds):
        query = (_unsorted_card if whose == "nobody" else _card).where(
            Deal.stage_id == bindparam(f"stage_{n}"))
        if whose == "nobody":
            query = query.where(Deal.owner_id.is_(None))
        elif whose == "one":
            query = query.where(Deal.owner_id == bindparam("owner_id"))
        page = (query.order_by(Deal.created_at.desc(), Deal.id.desc())
                .limit(literal(int(limit), literal_execute=True)).subquery(f"column_{n}"))
        pages.append(select(page))
    return union_all(*pages)


def board_card_rows(session: Session, actor: Actor, stages, *, owner_id: int | None = None,
                    limit: int = PAGE_SIZE) -> dict[int, list]:
    """``column_card_rows`` of every stage at once (first pages): stage id -> rows."""
    stages = list(stages)
    if not stages:
        return {}
    kinds = tuple(_whose(actor, stage, owner_id) for stage in stages)
    values = {f"stage_{n}": stage.id for n, stage in enumerate(stages)}
    if "one" in kinds:
        values["owner_id"] = _owner_shown(actor, owner_id)
    columns = {stage.id: [] for stage in stages}
    for row in session.connection().execute(_first_pages(kinds, limit), values):
        columns[row.stage_id].append(row)
    return columns


SEARCH_LIMIT = 50
# Titles and names are found through trigram indexes (migration 0009); a text shorter than a
# trigram gives the index nothing to look up, so it is matched by a scan.
TRIGRAM_LENGTH = 3
_LIKE_ESCAPE = str.maketrans({"\\": "\\\\", "%": "\\%", "_": "\\_"})
# SQLite's trigram indexes: FTS5 tables over deals.title and contacts.name, keyed by rowid.
_deal_title_fts = table("deal_title_fts", column("rowid"), column("title"))
_contact_name_fts = table("contact_name_fts", column("rowid"), column("name"))


def search_cards(session: Session, actor: Actor, text: str, *, region: str,
                 pipeline_id: int | None = None, limit: int = SEARCH_LIMIT) -> list:
    """Cards whose deal number, contact phone, title or contact name matches ``text``,
    newest first, among the deals the actor may see. Title and name match when they hold
    ``text`` anywhere, in any letter case."""
    text = " ".join((text or "").split())
    if not text:
        return []
    if len(text) > 100:
        raise ValidationError("Search for at most 100 characters.", field="q")
    # A NUL ends an SQLite pattern early (it would match every deal), PostgreSQL refuses it,
    # and neither stores half a surrogate pair: such text is no title or name anyway.
    if not _is_text(text):
        raise ValidationError("Search for letters, digits or signs, not control characters.",
                              field="q")
    matches = []  # each way a deal can match, as a condition on the deal
    number = text.lstrip("#").strip()
    # ASCII digits only: "²" is a digit to Python, yet no number int() reads.
    if number.isascii() and number.isdigit() and len(number) <= 18:
        matches.append(Deal.id == int(number))
    try:
        e164 = normalize_number(text, region=region)
    except ValidationError:
        e164 = None
    if e164:
        matches.append(Deal.contact_id.in_(select(ContactPhone.contact_id)
                                           .where(ContactPhone.e164 == e164)))
    newest_first = (Deal.created_at.desc(), Deal.id.desc())
    if len(text) < TRIGRAM_LENGTH:
        pattern = _like_pattern(text)
        query = _card.where(or_(func.lower(Deal.title).like(pattern, escape="\\"),
                                func.lower(Contact.name).like(pattern, escape="\\"),
                                *matches), *_shown(actor, pipeline_id, Deal.owner_id))
        return list(session.exec(query.order_by(*newest_first).limit(limit)))
    # SQLite keeps no statistics to tell it that a seller owns a small share of the deals,
    # not a handful: left to itself it reads every deal of theirs and looks each up in the
    # search index, several times slower than the other way round. "+ 0" hides the owner
    # indexes from it; PostgreSQL weighs both ways on its statistics.
    owner = Deal.owner_id + 0 if session.get_bind().dialect.name == "sqlite" else Deal.owner_id
    shown = _shown(actor, pipeline_id, owner)
    # Each way of matching is read through its own index, the deals it finds narrowed and
    # ordered on what that read gives (an OR across the contact join would leave the planner
    # nothing but a scan of the deals); the card, its contact, owner and overdue mark are
    # read for the page's deals only.
    found = union(*(select(Deal.id, Deal.created_at).where(match, *shown)
                    for match in _word_matches(session, text) + matches)).subquery("found")
    page = (select(found.c.id).order_by(found.c.created_at.desc(), found.c.id.desc())
            .limit(limit))
    return list(session.exec(_card.where(Deal.id.in_(page)).order_by(*newest_first)))


def _shown(actor: Actor, pipeline_id: int | None, owner) -> list:
    """Conditions on a deal: in the pipeline searched, if one is; the actor may see it (a
    seller: their own and the Unsorted ones). ``owner``: the deal's owner column as the
    query should read it."""
    shown = [] if pipeline_id is None else [Deal.pipeline_id == pipeline_id]
    if not actor.sees_everything:
        unsorted = select(Stage.id).where(Stage.is_unsorted)
        shown.append(or_(owner == actor.user_id,
                         and_(owner.is_(None), Deal.stage_id.in_(unsorted))))
    return shown


def _is_text(text: str) -> bool:
    if any(character < " " or character == "\x7f" for character in text):
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _like_pattern(text: str) -> str:
    """``text`` as a lower-case ``LIKE`` pattern for "holds it anywhere", its own ``%``,
    ``_`` and ``\\`` taken literally (with ``ESCAPE '\\'``)."""
    return "%" + text.lower().translate(_LIKE_ESCAPE) + "%"


def _word_matches(session: Session, text: str) -> list:
    """Conditions on a deal: its title holds ``text`` (a trigram long at least), in any
    letter case; its contact's name does.

    PostgreSQL: ``lower(..) LIKE`` is what the GIN ``gin_trgm_ops`` indexes on ``lower(title)``
    and ``lower(name)`` answer (without ``pg_trgm`` the same query scans). SQLite: a phrase
    query on the FTS5 trigram tables, which matches any run of three characters or more,
    folding the case of every alphabet (SQLite's own ``lower()`` folds ASCII only)."""
    if session.get_bind().dialect.name == "sqlite":
        # A quoted FTS5 string: every character literal, a quote written twice.
        phrase = '"' + text.replace('"', '""') + '"'
        titles = select(_deal_title_fts.c.rowid).where(_deal_title_fts.c.title.match(phrase))
        contacts = select(_contact_name_fts.c.rowid).where(
            _contact_name_fts.c.name.match(phrase))
        return [Deal.id.in_(titles), Deal.contact_id.in_(contacts)]
    pattern = _like_pattern(text)
    contacts = select(Contact.id).where(func.lower(Contact.name).like(pattern, escape="\\"))
    return [func.lower(Deal.title).like(pattern, escape="\\"), Deal.contact_id.in_(contacts)]
