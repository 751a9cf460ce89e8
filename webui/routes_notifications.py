"""The signed-in user's notifications: the list, marking them read, and answering the robot
nudges they carry (the core lets a seller answer for their own deals only)."""

from __future__ import annotations

import bottle

from pbx_crm.people import notifications
from pbx_crm.db import transaction
from pbx_crm.errors import CrmError

from .app import WebUI, form
from .routes_robots import answer_nudge_form


def register(ui: WebUI) -> None:
    app = ui.app

    def notifications_page(*, error: str | None = None, status: int = 200):
        with transaction(ui.engine, read_only=True) as session:
            found = notifications.notifications_of(session, ui.actor)
            open_nudges = notifications.unanswered_nudges(session, found)
            reminded = notifications.reminded_tasks(session, found)
        return ui.render("notifications.html", notifications=found, open_nudges=open_nudges,
                         reminded=reminded, error=error, status=status)

    @app.get("/notifications", name="notifications")
    def show_notifications():
        return notifications_page()

    @app.post("/notifications/<notification_id:int>/read")
    def read_one(notification_id):
        with transaction(ui.engine) as session:
            notifications.mark_read(session, ui.actor, notification_id)
        return bottle.redirect("/notifications", 303)

    @app.post("/notifications/read-all")
    def read_all():
        with transaction(ui.engine) as session:
            notifications.mark_all_read(session, ui.actor)
        return bottle.redirect("/notifications", 303)

    @app.post("/nudges/<run_id:int>/answer", name="nudge_answer")
    def answer_nudge(run_id):
        values = form()
        try:
            with transaction(ui.engine) as session:
                answer_nudge_form(session, ui.actor, run_id, values)
        except CrmError as error:
            return notifications_page(error=ui.refusal_text(error), status=error.status)
        return bottle.redirect("/notifications", 303)
