"""The robots page of a head: a pipeline's robot rules per stage, the form that adds or edits
one, switching a rule off and on, deleting it, and the latest robot runs and failures.

The form has one set of fields per condition kind and per action kind (``robots.js`` shows
the set that goes with the chosen kind); only the chosen kinds' fields are read into the
rule's settings, and the core (``pbx_crm.robots.rules``) validates them. A seller is refused
by the core (403). A refused form re-renders the page with the core's message and what was
typed; its transaction rolled back, so nothing changed.
"""

from __future__ import annotations

import bottle
from sqlmodel import select

from pbx_crm.funnel import pipelines
from pbx_crm.db import transaction
from pbx_crm.enums import NudgeAnswer, StageKind
from pbx_crm.errors import CrmError, Phrase, ValidationError
from pbx_crm.rules.funnel import ensure_head
from pbx_crm.models import Stage, User
from pbx_crm.rules.money import plain_amount, to_minor
from pbx_crm.robots import nudges
from pbx_crm.robots import rules as robot_rules

from .app import WebUI, form, int_field, query

TIME_UNITS = ("hours", "days", "business_hours", "business_days")
MINUTE_CONDITIONS = (robot_rules.Condition.UNSORTED_NOT_TAKEN.value,
                     robot_rules.Condition.MISSED_CALL_NOT_RETURNED.value)
PRIORITY_NAMES = {0: "low", 1: "normal", 2: "high"}
RUN_LIMIT = 50
FORM_FIELDS = ("stage_id", "name", "condition", "time_count", "time_unit", "days", "minutes",
               "min_amount", "max_amount", "action", "message", "task_title", "due_hours",
               "priority", "target_stage_id", "lost_reason", "user_id")
NEW_RULE = {"condition": robot_rules.Condition.TIME_IN_STAGE.value, "time_unit": "hours",
            "action": robot_rules.Action.NOTIFY_OWNER.value, "priority": "low"}


def _filled(values, name: str) -> str | None:
    text = (values.get(name) or "").strip()
    return text or None


def condition_params(values, condition: str, currency: str, locale: str) -> dict:
    """The settings of the chosen condition, from its own fields only; amounts are typed in
    the pipeline's currency and stored in minor units."""
    params: dict = {}
    if condition == robot_rules.Condition.TIME_IN_STAGE.value:
        unit = values.get("time_unit") or ""
        if unit not in TIME_UNITS:
            raise ValidationError("Choose hours, days, business hours or business days.",
                                  field="condition_params")
        params[unit] = values.get("time_count", "")
    elif condition == robot_rules.Condition.NO_ACTIVITY.value:
        params["days"] = values.get("days", "")
    elif condition in MINUTE_CONDITIONS:
        params["minutes"] = values.get("minutes", "")
    for bound in ("min_amount", "max_amount"):
        text = _filled(values, bound)
        if text is not None:
            params[bound] = to_minor(text, currency, locale=locale)
    return params


def action_params(values, action: str) -> dict:
    """The settings of the chosen action, from its own fields only (empty optional fields
    are left out, so the core's defaults apply)."""
    params: dict = {}
    if action in (robot_rules.Action.NOTIFY_OWNER.value, robot_rules.Action.NOTIFY_HEADS.value):
        if _filled(values, "message"):
            params["message"] = values.get("message")
    elif action == robot_rules.Action.CREATE_TASK.value:
        if _filled(values, "task_title"):
            params["title"] = values.get("task_title")
        if _filled(values, "due_hours"):
            params["due_hours"] = values.get("due_hours").strip()
    elif action == robot_rules.Action.SET_PRIORITY.value:
        params["priority"] = values.get("priority", "")
    elif action == robot_rules.Action.MOVE_TO_STAGE.value:
        params["stage_id"] = values.get("target_stage_id", "")
        if _filled(values, "lost_reason"):
            params["lost_reason"] = values.get("lost_reason")
    elif action == robot_rules.Action.REASSIGN.value:
        params["user_id"] = values.get("user_id", "")
    return params


def rule_values(rule, currency: str, locale: str) -> dict:
    """A stored rule as the form's fields, for its edit form."""
    values = {"name": rule.name, "condition": rule.condition, "action": rule.action,
              "stage_id": str(rule.stage_id)}
    cp, ap = rule.condition_params, rule.action_params
    for unit in TIME_UNITS:
        if unit in cp and rule.condition == robot_rules.Condition.TIME_IN_STAGE.value:
            values.update(time_unit=unit, time_count=str(cp[unit]))
    if "days" in cp:
        values["days"] = str(cp["days"])
    if "minutes" in cp:
        values["minutes"] = str(cp["minutes"])
    for bound in ("min_amount", "max_amount"):
        if bound in cp:
            values[bound] = plain_amount(cp[bound], currency, locale=locale)
    values.update(message=ap.get("message", ""), task_title=ap.get("title", ""),
                  due_hours=str(ap.get("due_hours", "")) if "due_hours" in ap else "",
                  priority=PRIORITY_NAMES.get(ap.get("priority"), ""),
                  target_stage_id=str(ap.get("stage_id", "")),
                  lost_reason=ap.get("lost_reason", ""), user_id=str(ap.get("user_id", "")))
    return values


def register(ui: WebUI) -> None:
    app = ui.app

    def robots_page(pipeline_id: int | None, *, values: dict | None = None,
                    editing: int | None = None, error: str | None = None, status: int = 200):
        actor = ui.actor
        locale = ui.locale()
        with transaction(ui.engine, read_only=True) as session:
            ensure_head(actor, Phrase("see the robots"))
            pipeline = pipelines.get_pipeline(session, pipeline_id)
            stages = pipelines.stages_of(session, pipeline.id)
            rules = robot_rules.list_rules(session, actor, pipeline.id)
            runs = robot_rules.recent_runs(session, actor, limit=RUN_LIMIT)
            rule = None
            if editing is not None:
                rule = robot_rules.get_rule(session, editing)
                if rule.stage_id not in {stage.id for stage in stages}:
                    raise ValidationError("Robot #%(rule_id)s is on another pipeline.",
                                          rule_id=rule.id, field="edit")
                if values is None:
                    values = rule_values(rule, pipeline.currency, locale)
                else:  # the stage of a rule does not change; its field is not posted
                    values = {**values, "stage_id": str(rule.stage_id)}
            people = list(session.exec(select(User).where(User.active).order_by(User.name)))
            all_pipelines = pipelines.list_pipelines(session)
        by_stage = {stage.id: [] for stage in stages}
        for found, stage in rules:
            by_stage[stage.id].append(found)
        return ui.render(
            "robots.html", status=status, error=error, pipeline=pipeline,
            pipelines=all_pipelines, stages=stages, by_stage=by_stage,
            open_stages=[s for s in stages if s.kind == StageKind.OPEN.value],
            runs=runs, editing=rule,
            values={**dict.fromkeys(FORM_FIELDS, ""), **(values or NEW_RULE)},
            stage_names={stage.id: ui.gettext("Unsorted") if stage.is_unsorted else stage.name
                         for stage in stages},
            people=people, people_names={person.id: person.name for person in people},
            conditions=[c.value for c in robot_rules.Condition],
            actions=[a.value for a in robot_rules.Action], time_units=TIME_UNITS,
            currency=pipeline.currency)

    def pipeline_of_rule(session, rule_id: int) -> int:
        rule = robot_rules.get_rule(session, rule_id)
        return session.get(Stage, rule.stage_id).pipeline_id

    @app.get("/robots", name="robots")
    def show_robots():
        values = query()
        return robots_page(int_field(values, "pipeline", Phrase("pipeline"), required=False),
                           editing=int_field(values, "edit", Phrase("robot"), required=False))

    @app.post("/robots/rules", name="robot_add")
    def add_rule():
        values = form()
        ensure_head(ui.actor, Phrase("set up robots"))
        pipeline_id = int_field(values, "pipeline", Phrase("pipeline"), required=False)
        try:
            with transaction(ui.engine) as session:
                stage = pipelines.get_stage(session,
                                            int_field(values, "stage_id", Phrase("stage")))
                pipeline = pipelines.get_pipeline(session, stage.pipeline_id)
                pipeline_id = pipeline.id
                condition = values.get("condition", "")
                action = values.get("action", "")
                robot_rules.create_rule(
                    session, ui.actor, stage_id=stage.id, name=values.get("name", ""),
                    condition=condition,
                    condition_params=condition_params(values, condition, pipeline.currency,
                                                      ui.locale()),
                    action=action, action_params=action_params(values, action))
        except CrmError as error:
            return robots_page(pipeline_id, values=dict(values), error=ui.refusal_text(error),
                               status=error.status)
        return bottle.redirect(f"/robots?pipeline={pipeline_id}", 303)

    @app.post("/robots/rules/<rule_id:int>/edit", name="robot_edit")
    def edit_rule(rule_id):
        values = form()
        ensure_head(ui.actor, Phrase("set up robots"))
        with transaction(ui.engine, read_only=True) as session:
            pipeline_id = pipeline_of_rule(session, rule_id)
        try:
            with transaction(ui.engine) as session:
                pipeline = pipelines.get_pipeline(session, pipeline_id)
                condition = values.get("condition", "")
                action = values.get("action", "")
                robot_rules.update_rule(
                    session, ui.actor, rule_id, name=values.get("name", ""),
                    condition=condition or None,
                    condition_params=condition_params(values, condition, pipeline.currency,
                                                      ui.locale()),
                    action=action or None, action_params=action_params(values, action))
        except CrmError as error:
            return robots_page(pipeline_id, values=dict(values), editing=rule_id,
                               error=ui.refusal_text(error), status=error.status)
        return bottle.redirect(f"/robots?pipeline={pipeline_id}", 303)

    @app.post("/robots/rules/<rule_id:int>/active", name="robot_active")
    def set_active(rule_id):
        values = form()
        with transaction(ui.engine) as session:
            ensure_head(ui.actor, Phrase("set up robots"))
            pipeline_id = pipeline_of_rule(session, rule_id)
            active = values.get("active")
            if active not in ("yes", "no"):
                raise ValidationError("Switch a robot on (yes) or off (no).", field="active")
            robot_rules.set_rule_active(session, ui.actor, rule_id, active == "yes")
        return bottle.redirect(f"/robots?pipeline={pipeline_id}", 303)

    @app.post("/robots/rules/<rule_id:int>/delete", name="robot_delete")
    def delete_rule(rule_id):
        with transaction(ui.engine) as session:
            ensure_head(ui.actor, Phrase("set up robots"))
            pipeline_id = pipeline_of_rule(session, rule_id)
            robot_rules.delete_rule(session, ui.actor, rule_id)
        return bottle.redirect(f"/robots?pipeline={pipeline_id}", 303)


def answer_nudge_form(session, actor, robot_run_id: int, values):
    """The nudge's answer as its form posts it: one button per answer, and the number of days
    beside "Snooze", read only for that answer."""
    answer = values.get("answer", "")
    snooze_days = (int_field(values, "snooze_days", Phrase("number of days"))
                   if answer == NudgeAnswer.SNOOZE.value else None)
    return nudges.answer_nudge(session, actor, robot_run_id, answer=answer,
                               snooze_days=snooze_days)
