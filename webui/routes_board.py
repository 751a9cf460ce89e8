"""The Kanban board: columns per stage, a page of cards each, "show more", search, filters.

Cards are read as plain rows (``board.column_card_rows``), and the column totals from the
totals the deal services keep (``pbx_crm.funnel.stage_totals``), so a board over a large pipeline
stays one short index range per column plus one read of a few dozen totals rows. The cards
get the callback target (in seconds), past which an Unsorted card's waiting clock is late.
"""

from __future__ import annotations

from datetime import datetime

import bottle

from pbx_crm.funnel import board, pipelines
from pbx_crm.people import users
from pbx_crm.db import transaction
from pbx_crm.errors import NotFound, Phrase, ValidationError

from .app import WebUI, int_field, query

# Cards per column on a page load; "show more" fetches the next ones.
BOARD_PAGE = 20


def cursor_of(row) -> str:
    return f"{row.created_at.isoformat()}|{row.id}"


def parse_cursor(text: str | None) -> tuple[datetime, int] | None:
    if not text:
        return None
    stamp, _, deal_id = text.partition("|")
    try:
        moment = datetime.fromisoformat(stamp)
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None or not deal_id.isdigit():
        raise ValidationError("This “show more” link is malformed; reload the board.",
                              field="after")
    return moment, int(deal_id)


def register(ui: WebUI) -> None:
    app = ui.app

    @app.get("/", name="home")
    def home():
        return bottle.redirect("/board", 303)

    def callback_target() -> int:
        return ui.settings.callback_target_minutes * 60

    def _filters(all_pipelines):
        values = query()
        pipeline_id = int_field(values, "pipeline", Phrase("pipeline"), required=False)
        pipeline = pipelines.pick_pipeline(all_pipelines, pipeline_id)
        owner_id = None
        if ui.actor.sees_everything:
            owner_id = int_field(values, "owner", Phrase("seller"), required=False)
        return pipeline, owner_id

    @app.get("/board", name="board")
    def show_board():
        actor = ui.actor
        with transaction(ui.engine, read_only=True) as session:
            all_pipelines = pipelines.list_pipelines(session)
            try:
                pipeline, owner_id = _filters(all_pipelines)
            except NotFound:
                return ui.render("board.html", pipeline=None, columns=[], all_pipelines=[],
                                 sellers=[], owner_id=None, search=None, q="",
                                 callback_target=callback_target())
            text = (query().get("q") or "").strip()
            stages = pipelines.stages_of(session, pipeline.id)
            search = None
            columns = []
            if text:
                search = board.search_cards(session, actor, text,
                                            region=ui.settings.phone_region)
            else:
                totals = board.column_totals(session, actor, pipeline.id, owner_id=owner_id)
                first_pages = board.board_card_rows(session, actor, stages, owner_id=owner_id,
                                                    limit=BOARD_PAGE + 1)
                for stage in stages:
                    cards = first_pages[stage.id]
                    columns.append((stage, cards[:BOARD_PAGE],
                                    cursor_of(cards[BOARD_PAGE - 1])
                                    if len(cards) > BOARD_PAGE else None,
                                    totals.get(stage.id, board.ColumnTotal(stage.id, 0, 0))))
            sellers = users.list_sellers(session) if actor.sees_everything else []
        return ui.render("board.html", pipeline=pipeline, columns=columns,
                         all_pipelines=all_pipelines, sellers=sellers, owner_id=owner_id,
                         search=search, q=text, callback_target=callback_target())

    @app.get("/board/column/<stage_id:int>", name="board_column")
    def more_cards(stage_id):
        actor = ui.actor
        values = query()
        with transaction(ui.engine, read_only=True) as session:
            stage = pipelines.get_stage(session, stage_id)
            owner_id = (int_field(values, "owner", Phrase("seller"), required=False)
                        if actor.sees_everything else None)
            after = parse_cursor(values.get("after"))
            cards = board.column_card_rows(session, actor, stage, owner_id=owner_id,
                                           after=after, limit=BOARD_PAGE + 1)
        more = cursor_of(cards[BOARD_PAGE - 1]) if len(cards) > BOARD_PAGE else None
        return ui.render("_cards.html", cards=cards[:BOARD_PAGE], stage=stage, more=more,
                         callback_target=callback_target())
