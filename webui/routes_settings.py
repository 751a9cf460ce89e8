"""Settings: a user's own language; for a head, pipelines and stages, users, their extensions
and the devices that ring for each, and whether inbound calls open Unsorted deals.

The services refuse a seller (``funnel.ensure_head``); the page shows a seller only their own
language. A refused form re-renders the page with the message; nothing was changed.
"""

from __future__ import annotations

import bottle

from pbx_crm.funnel import pipelines
from pbx_crm.people import users
from pbx_crm.db import transaction
from pbx_crm.errors import CrmError, NotFound, Phrase, ValidationError
from pbx_crm.rules.funnel import ensure_head
from pbx_crm.models import User

from .app import WebUI, form


def _split(text: str) -> list[str]:
    return [part.strip() for part in (text or "").replace(",", " ").split() if part.strip()]


def register(ui: WebUI) -> None:
    app = ui.app

    def settings_page(*, error=None, status=200):
        actor = ui.actor
        with transaction(ui.engine, read_only=True) as session:
            if actor.sees_everything:
                found = [(p, pipelines.stages_of(session, p.id))
                         for p in pipelines.list_pipelines(session)]
                people = users.list_users(session)
                devices = users.devices_of_extensions(session)
            else:
                found, people, devices = [], [], {}
        return ui.render("settings.html", pipelines=found, people=people, devices=devices,
                         error=error, status=status, languages=users.LANGUAGES,
                         pbxes=ui.settings.pbx_names)

    def change(work):
        values = form()
        try:
            with transaction(ui.engine) as session:
                work(session, values)
        except CrmError as error:
            return settings_page(error=ui.refusal_text(error), status=error.status)
        return bottle.redirect("/settings", 303)

    def user_of(session, user_id: int) -> User:
        user = session.get(User, user_id)
        if user is None:
            raise NotFound("No user #%(user_id)s.", user_id=user_id)
        return user

    @app.get("/settings", name="settings")
    def show_settings():
        return settings_page()

    @app.post("/settings/language")
    def my_language():
        return change(lambda session, values: users.set_language(
            session, ui.actor, ui.actor.user_id, values.get("language", "")))

    @app.post("/settings/pipelines")
    def add_pipeline():
        def work(session, values):
            stages = [(line.strip(), "open") for line in values.get("stages", "").splitlines()
                      if line.strip()]
            pipelines.create_pipeline(session, ui.actor, name=values.get("name", ""),
                                      stages=stages,
                                      currency=values.get("currency") or ui.settings.currency,
                                      creates_deals_from_calls=bool(values.get("calls")))
        return change(work)

    @app.post("/settings/pipelines/<pipeline_id:int>/stages")
    def add_stage(pipeline_id):
        return change(lambda session, values: pipelines.add_stage(
            session, ui.actor, pipeline_id, name=values.get("name", ""),
            kind=values.get("kind") or "open"))

    @app.post("/settings/pipelines/<pipeline_id:int>/calls")
    def calls_make_deals(pipeline_id):
        return change(lambda session, values: pipelines.set_creates_deals_from_calls(
            session, ui.actor, pipeline_id, values.get("enabled") == "yes"))

    @app.post("/settings/stages/<stage_id:int>/rename")
    def rename_stage(stage_id):
        return change(lambda session, values: pipelines.rename_stage(
            session, ui.actor, stage_id, values.get("name", "")))

    @app.post("/settings/stages/<stage_id:int>/move")
    def move_stage(stage_id):
        def work(session, values):
            ensure_head(ui.actor, Phrase("change stages"))
            direction = values.get("direction")
            if direction not in ("up", "down"):
                raise ValidationError("Move a stage up or down.", field="direction")
            stage = pipelines.get_stage(session, stage_id)
            order = [s.id for s in pipelines.stages_of(session, stage.pipeline_id)]
            index = order.index(stage_id)
            other = index - 1 if direction == "up" else index + 1
            if not 0 <= other < len(order):
                raise ValidationError("“%(stage)s” is at the end already.", stage=stage.name,
                                      field="direction")
            order[index], order[other] = order[other], order[index]
            pipelines.reorder_stages(session, ui.actor, stage.pipeline_id, order)
        return change(work)

    @app.post("/settings/users")
    def add_user():
        return change(lambda session, values: users.create_user(
            session, ui.actor, login=values.get("login", ""), name=values.get("name", ""),
            password=values.get("password", ""), role=values.get("role", "seller"),
            extensions=_split(values.get("extensions", "")), pbxes=ui.settings.pbx_names,
            language=values.get("language") if values.get("language") in users.LANGUAGES
            else "en"))

    @app.post("/settings/users/<user_id:int>/active")
    def set_active(user_id):
        def work(session, values):
            ensure_head(ui.actor, Phrase("activate or deactivate users"))
            user = user_of(session, user_id)
            if user.id == ui.actor.user_id:
                raise ValidationError("You cannot deactivate yourself.", field="active")
            users.set_active(session, ui.actor, user.login, values.get("active") == "yes")
        return change(work)

    @app.post("/settings/users/<user_id:int>/extensions")
    def set_extensions(user_id):
        def work(session, values):
            ensure_head(ui.actor, Phrase("change extensions"))
            users.set_extensions(session, ui.actor, user_of(session, user_id).id,
                                 _split(values.get("extensions", "")),
                                 pbxes=ui.settings.pbx_names)
        return change(work)

    @app.post("/settings/users/<user_id:int>/devices")
    def set_devices(user_id):
        def work(session, values):
            ensure_head(ui.actor, Phrase("change extensions"))
            users.set_devices(session, ui.actor, user_of(session, user_id).id,
                              values.get("extension", ""), _split(values.get("devices", "")))
        return change(work)

    @app.post("/settings/users/<user_id:int>/language")
    def set_language(user_id):
        return change(lambda session, values: users.set_language(
            session, ui.actor, user_id, values.get("language", "")))

    @app.post("/settings/users/<user_id:int>/email")
    def set_email(user_id):
        def work(session, values):
            ensure_head(ui.actor, Phrase("change e-mail addresses"))
            users.set_email(session, ui.actor, user_of(session, user_id).id,
                            values.get("email", "").strip() or None)
        return change(work)


