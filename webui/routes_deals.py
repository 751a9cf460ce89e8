"""A deal's card and everything done from it: move, take, edit, reassign, close, reopen,
notes, tasks, answers to robot nudges, click-to-call, export; and the "New deal" form.

Every route with ``<deal_id>`` has passed the ownership check in ``app.WebUI`` before it runs.
A change posts the deal's ``version`` as the page showed it; a refusal (stale version,
malformed value) re-renders the card with the message, and the transaction that tried the
change rolls back, so nothing is half-done. Drags on the board post the same forms with
``Accept: application/json`` and get JSON back.
"""

from __future__ import annotations

from datetime import datetime, time
from zoneinfo import ZoneInfo

import bottle

from pbx_crm.funnel import board, deals, pipelines, tasks
from pbx_crm.telephony.click_to_call import call_contact
from pbx_crm.db import transaction
from pbx_crm.funnel.deal_card import deal_card
from pbx_crm.enums import StageKind
from pbx_crm.errors import (CrmError, CustomerOfAnotherSeller, Phrase, StaleVersion,
                            ValidationError)
from pbx_crm.models import RobotRun
from pbx_crm.rules.money import to_minor
from pbx_crm.funnel.new_deal import create_deal_with_contact
from pbx_crm.people import users

from .app import WebUI, form, int_field, query, version_field
from .routes_robots import answer_nudge_form


def _due_at(text: str, zone: str) -> datetime | None:
    """A due date (YYYY-MM-DD, as the date input sends it) at the end of that day, local."""
    text = (text or "").strip()
    if not text:
        return None
    try:
        day = datetime.strptime(text, "%Y-%m-%d").date()
    except ValueError:
        raise ValidationError("“%(text)s” is not a date.", text=text[:20], field="due_at") \
            from None
    return datetime.combine(day, time(18, 0), tzinfo=ZoneInfo(zone))


def register(ui: WebUI) -> None:
    app = ui.app

    def deal_page(deal_id: int, *, error: str | None = None, status: int = 200):
        with transaction(ui.engine, read_only=True) as session:
            card = deal_card(session, ui.actor, deal_id)
        return ui.render("deal.html", card=card, error=error, status=status,
                         can_call=ui.originate() is not None,
                         recordings_url=ui.settings.recordings_url,
                         StageKind=StageKind)

    def current_state(deal_id: int) -> dict:
        with transaction(ui.engine, read_only=True) as session:
            deal, stage = deals.load_deal(session, deal_id)
        return {"id": deal.id, "stage_id": stage.id, "stage": stage.name,
                "version": deal.version}

    def totals_json(pipeline_id: int) -> dict:
        fmt = ui.formatter()
        with transaction(ui.engine, read_only=True) as session:
            pipeline = pipelines.get_pipeline(session, pipeline_id)
            owner_id = None
            if ui.actor.sees_everything:
                owner_id = int_field(form(), "owner", Phrase("seller"), required=False)
            totals = board.column_totals(session, ui.actor, pipeline_id, owner_id=owner_id)
        return {str(stage_id): {"count": total.deals,
                                "money": fmt.money(total.amount_minor, pipeline.currency)}
                for stage_id, total in totals.items()}

    def change(deal_id: int, work, *, done: str | None = None):
        """Run ``work(session, values)`` in one transaction; answer with the card (or JSON)."""
        values = form()
        try:
            with transaction(ui.engine) as session:
                deal = work(session, values)
        except CrmError as error:
            if ui.wants_json():
                payload = {"error": ui.refusal_text(error)}
                if isinstance(error, StaleVersion) or error.status == 409:
                    payload["deal"] = current_state(deal_id)
                return ui.json(payload, status=error.status)
            return deal_page(deal_id, error=ui.refusal_text(error), status=error.status)
        if ui.wants_json():
            return ui.json({"ok": True, "deal": current_state(deal_id),
                            "totals": totals_json(deal.pipeline_id)})
        return bottle.redirect(done or f"/deals/{deal_id}", 303)

    # --- reading ------------------------------------------------------------------------

    @app.get("/deals/<deal_id:int>", name="deal")
    def show_deal(deal_id):
        return deal_page(deal_id)

    @app.get("/deals/<deal_id:int>/export", name="deal_export")
    def export_deal(deal_id):
        with transaction(ui.engine, read_only=True) as session:
            card = deal_card(session, ui.actor, deal_id)
        deal = card.deal
        bottle.response.headers["Content-Disposition"] = \
            f'attachment; filename="deal-{deal.id}.json"'
        return ui.json({
            "id": deal.id, "title": deal.title, "amount_minor": deal.amount_minor,
            "currency": deal.currency, "stage": card.stage.name,
            "pipeline": card.pipeline.name, "priority": deal.priority,
            "owner": card.owner.login if card.owner else None,
            "contact": {"name": card.contact.name,
                        "phones": [p.e164 for p in card.phones]} if card.contact else None,
            "created_at": deal.created_at.isoformat(), "version": deal.version,
            "timeline": [{"kind": line.entry.kind, "at": line.entry.created_at.isoformat(),
                          "body": line.entry.body, "author": line.author_name}
                         for line in card.timeline],
            "tasks": [{"title": t.title, "due_at": t.due_at.isoformat() if t.due_at else None,
                       "done": t.done_at is not None} for t in card.tasks]})

    # --- the funnel -----------------------------------------------------------------------

    @app.post("/deals/<deal_id:int>/move", name="deal_move")
    def move(deal_id):
        def work(session, values):
            return deals.move_deal(session, ui.actor, deal_id,
                                   to_stage_id=int_field(values, "stage_id", Phrase("stage")),
                                   expected_version=version_field(values),
                                   lost_reason=values.get("lost_reason"))
        return change(deal_id, work)

    @app.post("/deals/<deal_id:int>/take", name="deal_take")
    def take(deal_id):
        return change(deal_id, lambda session, values: deals.take_deal(session, ui.actor,
                                                                       deal_id))

    @app.post("/deals/<deal_id:int>/edit", name="deal_edit")
    def edit(deal_id):
        def work(session, values):
            deal, _ = deals.load_deal(session, deal_id)
            return deals.update_deal(
                session, ui.actor, deal_id, expected_version=version_field(values),
                title=values.get("title", ""),
                amount_minor=to_minor(values.get("amount", ""), deal.currency,
                                      locale=ui.locale()),
                priority=int_field(values, "priority", Phrase("priority")))
        return change(deal_id, work)

    @app.post("/deals/<deal_id:int>/assign", name="deal_assign")
    def assign(deal_id):
        def work(session, values):
            return deals.assign_deal(session, ui.actor, deal_id,
                                     owner_id=int_field(values, "owner_id", Phrase("seller")),
                                     expected_version=version_field(values))
        return change(deal_id, work)

    @app.post("/deals/<deal_id:int>/won", name="deal_won")
    def won(deal_id):
        return change(deal_id, lambda session, values: deals.close_won(
            session, ui.actor, deal_id, expected_version=version_field(values)))

    @app.post("/deals/<deal_id:int>/lost", name="deal_lost")
    def lost(deal_id):
        return change(deal_id, lambda session, values: deals.close_lost(
            session, ui.actor, deal_id, reason=values.get("reason", ""),
            expected_version=version_field(values)))

    @app.post("/deals/<deal_id:int>/reopen", name="deal_reopen")
    def reopen(deal_id):
        return change(deal_id, lambda session, values: deals.reopen_deal(
            session, ui.actor, deal_id, expected_version=version_field(values)))

    # --- notes and tasks ----------------------------------------------------------------

    @app.post("/deals/<deal_id:int>/notes", name="deal_note")
    def note(deal_id):
        def work(session, values):
            deals.add_note(session, ui.actor, deal_id, values.get("body", ""))
            return deals.load_deal(session, deal_id)[0]
        return change(deal_id, work)

    @app.post("/deals/<deal_id:int>/tasks", name="deal_task_add")
    def add_task(deal_id):
        zone = ui.formatter().zone.key

        def work(session, values):
            tasks.add_task(session, ui.actor, deal_id, title=values.get("title", ""),
                           due_at=_due_at(values.get("due", ""), zone))
            return deals.load_deal(session, deal_id)[0]
        return change(deal_id, work)

    @app.post("/deals/<deal_id:int>/tasks/<task_id:int>/done", name="deal_task_done")
    def task_done(deal_id, task_id):
        def work(session, values):
            task = session.get(tasks.Task, task_id)
            if task is None or task.deal_id != deal_id:
                raise ValidationError("Deal #%(deal_id)s has no task #%(task_id)s.",
                                      deal_id=deal_id, task_id=task_id, field="task")
            tasks.complete_task(session, ui.actor, task_id)
            return deals.load_deal(session, deal_id)[0]
        return change(deal_id, work)

    # --- robot nudges ------------------------------------------------------------------

    @app.post("/deals/<deal_id:int>/nudges/<run_id:int>/answer", name="deal_nudge_answer")
    def answer_nudge(deal_id, run_id):
        def work(session, values):
            run = session.get(RobotRun, run_id)
            if run is None or run.deal_id != deal_id:
                raise ValidationError("Deal #%(deal_id)s has no robot nudge #%(run_id)s.",
                                      deal_id=deal_id, run_id=run_id, field="nudge")
            answer_nudge_form(session, ui.actor, run_id, values)
            return deals.load_deal(session, deal_id)[0]
        return change(deal_id, work)

    # --- click-to-call ------------------------------------------------------------------

    def call_refused(deal_id: int, status: int, text: str):
        if ui.wants_json():
            return ui.json({"error": text}, status=status)
        return deal_page(deal_id, error=text, status=status)

    @app.post("/deals/<deal_id:int>/call", name="deal_call")
    def call(deal_id):
        """Click-to-call. The page says that the seller's phone rings now, or why it does
        not, in the user's language: as JSON next to the button (``static/notices.js``),
        else on the deal's page."""
        originate = ui.originate()
        if originate is None:
            return call_refused(deal_id, 503, ui.gettext(
                "Click-to-call needs the phone system's manager interface (AMI); "
                "ask an administrator to set it up."))
        values = form()
        try:
            with transaction(ui.engine) as session:
                placed = call_contact(session, ui.actor, deal_id,
                                      number=values.get("number") or None,
                                      originate=originate, settings=ui.settings)
        except CrmError as error:
            return call_refused(deal_id, error.status, ui.refusal_text(error))
        if ui.wants_json():
            return ui.json({"ok": True, "message": ui.gettext(
                "Your phone (ext %(extension)s) rings now: pick it up, and %(number)s is "
                "called.", extension=placed.extension, number=placed.number)})
        return bottle.redirect(f"/deals/{deal_id}", 303)

    # --- new deal -------------------------------------------------------------------------

    def new_deal_page(*, values=None, error=None, phone_error=None, status=200):
        with transaction(ui.engine, read_only=True) as session:
            try:
                pipeline = pipelines.get_pipeline(session, None)
            except CrmError as refusal:
                return ui.render("error.html", status=404, error=ui.refusal_text(refusal))
            stages = [s for s in pipelines.stages_of(session, pipeline.id)
                      if s.kind == StageKind.OPEN.value and not s.is_unsorted]
            sellers = users.list_sellers(session) if ui.actor.sees_everything else []
        return ui.render("deal_new.html", pipeline=pipeline, stages=stages, sellers=sellers,
                         values=values or {}, error=error, phone_error=phone_error,
                         status=status)

    @app.get("/deals/new", name="deal_new")
    def new_deal_form():
        # A screen-pop's quick-create link prefills the caller's number and name.
        asked = query()
        return new_deal_page(values={name: asked.get(name, "")[:200]
                                     for name in ("phone", "contact_name", "title")
                                     if asked.get(name)})

    @app.post("/deals/new")
    def new_deal_submit():
        values = form()
        try:
            with transaction(ui.engine) as session:
                pipeline = pipelines.get_pipeline(session, None)
                deal = create_deal_with_contact(
                    session, ui.actor, title=values.get("title", ""),
                    phone=values.get("phone", ""), contact_name=values.get("contact_name", ""),
                    region=ui.settings.phone_region, pipeline_id=pipeline.id,
                    amount_minor=to_minor(values.get("amount", ""), pipeline.currency,
                                          locale=ui.locale()),
                    stage_id=int_field(values, "stage_id", Phrase("stage"), required=False),
                    owner_id=int_field(values, "owner_id", Phrase("seller"), required=False))
        except CustomerOfAnotherSeller as refusal:
            # Shown at the phone field, in the user's language; the service's text is the
            # same sentence in English.
            return new_deal_page(values=dict(values), status=refusal.status,
                                 phone_error=ui.gettext(
                                     "This number belongs to another seller's customer; ask "
                                     "a head to hand the customer over."))
        except CrmError as error:
            return new_deal_page(values=dict(values), error=ui.refusal_text(error),
                                 status=error.status)
        return bottle.redirect(f"/deals/{deal.id}", 303)

