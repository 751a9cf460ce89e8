"""The Tasks page: the signed-in user's open tasks by when they fall due, done from the list,
and a quick add for a deal found by its number, title, contact or phone.

``POST /tasks`` is also the form a screen-pop posts to add a task for the pop's deal: fields
``csrf_token``, ``deal_id``, ``title``, and optionally ``due`` (YYYY-MM-DD, the user's day),
``due_time`` (HH:MM, the user's time; with no date, today) and ``next`` (a path of this site
to go back to). With ``Accept: application/json`` it answers 201 ``{"ok": true, "task": ..}``
or the refusal as ``{"error": ..}`` with its status. Whose deal a task may go on is the
core's to say (``funnel.tasks.add_task`` asks the funnel rules), as is finishing one.
"""

from __future__ import annotations

from datetime import datetime, time
from zoneinfo import ZoneInfo

import bottle

from pbx_crm.db import transaction
from pbx_crm.errors import CrmError, Phrase, ValidationError
from pbx_crm.funnel import board, task_list, tasks
from pbx_crm.people import users

from .app import WebUI, form, int_field, query

# Deals offered when several match the text typed in the quick add.
CHOICES = 8
# A due date without a time: the end of the working day, as on the deal card.
END_OF_DAY = time(18, 0)


class SeveralDeals(ValidationError):
    """The text typed for the deal matches more than one: the form offers them."""

    def __init__(self, rows):
        super().__init__("Several deals match; choose one.", field="deal")
        self.rows = rows


def due_at(values, zone: ZoneInfo, now: datetime) -> datetime | None:
    """The due time of the form's ``due`` (a date) and ``due_time`` (a time of day), in the
    user's zone; a date alone is due at 18:00, a time alone today."""
    day_text = (values.get("due") or "").strip()
    time_text = (values.get("due_time") or "").strip()
    if not day_text and not time_text:
        return None
    try:
        day = (datetime.strptime(day_text, "%Y-%m-%d").date() if day_text
               else now.astimezone(zone).date())
    except ValueError:
        raise ValidationError("“%(text)s” is not a date.", text=day_text[:20],
                              field="due") from None
    try:
        moment = datetime.strptime(time_text, "%H:%M").time() if time_text else END_OF_DAY
    except ValueError:
        raise ValidationError("“%(text)s” is not a time of day.", text=time_text[:20],
                              field="due_time") from None
    return datetime.combine(day, moment, tzinfo=zone)


def local_path(text: str | None) -> str | None:
    """``text`` when it is a path on this site (never another site's address)."""
    text = (text or "").strip()
    if text.startswith("/") and not text.startswith("//") and "\\" not in text \
            and len(text) <= 500 and text.isprintable():
        return text
    return None


def register(ui: WebUI) -> None:
    app = ui.app

    def tasks_page(*, values=None, choices=None, error=None, status=200):
        actor, fmt = ui.actor, ui.formatter()
        owner_id = None
        if actor.sees_everything:
            owner_id = int_field(query(), "seller", Phrase("seller"), required=False)
        with transaction(ui.engine, read_only=True) as session:
            groups = task_list.task_groups(session, actor, zone=fmt.zone, owner_id=owner_id,
                                           now=fmt.now)
            sellers = users.list_sellers(session) if actor.sees_everything else []
            overdue = (task_list.overdue_per_seller(session, now=fmt.now)
                       if actor.sees_everything else {})
        return ui.render("tasks.html", groups=groups, sellers=sellers, owner_id=owner_id,
                         overdue_by_seller=overdue, values=values or {}, choices=choices,
                         error=error, status=status)

    def chosen_deal(session, values) -> int:
        """The deal the quick add is for: the one picked (``deal_id``), else the only deal
        the actor may see that matches the text typed (``deal``)."""
        deal_id = int_field(values, "deal_id", Phrase("deal"), required=False)
        if deal_id is not None:
            return deal_id
        text = (values.get("deal") or "").strip()
        if not text:
            raise ValidationError("Say which deal the task is for.", field="deal")
        found = board.search_cards(session, ui.actor, text, region=ui.settings.phone_region,
                                   limit=CHOICES)
        if not found:
            raise ValidationError("No deal of yours matches “%(text)s”.", text=text[:100],
                                  field="deal")
        if len(found) > 1:
            # "4" names deal #4, not every deal whose title or phone holds a 4.
            exact = [row.id for row in found if str(row.id) == text.lstrip("#").strip()]
            if len(exact) == 1:
                return exact[0]
            raise SeveralDeals(found)
        return found[0].id

    @app.get("/tasks", name="tasks")
    def show_tasks():
        return tasks_page()

    @app.post("/tasks", name="task_add")
    def add_task():
        values = form()
        fmt = ui.formatter()
        try:
            with transaction(ui.engine) as session:
                task = tasks.add_task(session, ui.actor, chosen_deal(session, values),
                                      title=values.get("title", ""),
                                      due_at=due_at(values, fmt.zone, fmt.now))
        except CrmError as error:
            if ui.wants_json():
                return ui.json({"error": ui.refusal_text(error)}, status=error.status)
            kept = {name: values.get(name, "")[:200]
                    for name in ("deal", "title", "due", "due_time")}
            return tasks_page(values=kept, error=ui.refusal_text(error), status=error.status,
                              choices=error.rows if isinstance(error, SeveralDeals) else None)
        if ui.wants_json():
            return ui.json({"ok": True, "task": {
                "id": task.id, "deal_id": task.deal_id, "title": task.title,
                "due_at": task.due_at.isoformat() if task.due_at else None}}, status=201)
        return bottle.redirect(local_path(values.get("next")) or "/tasks", 303)

    @app.post("/tasks/<task_id:int>/done", name="task_done")
    def finish_task(task_id):
        values = form()
        try:
            with transaction(ui.engine) as session:
                tasks.complete_task(session, ui.actor, task_id)
        except CrmError as error:
            if ui.wants_json():
                return ui.json({"error": ui.refusal_text(error)}, status=error.status)
            return tasks_page(error=ui.refusal_text(error), status=error.status)
        if ui.wants_json():
            return ui.json({"ok": True, "task_id": task_id})
        return bottle.redirect(local_path(values.get("next")) or "/tasks", 303)
