"""``pbx-crm robot add|list|enable|disable|delete|runs`` (the stage robots and what they did)
and ``pbx-crm robots`` (their scheduler, run alone).
"""

from __future__ import annotations

from ..db import transaction
from ..errors import CrmError
from ..funnel import pipelines
from ..rules.money import format_money, locale_for, to_minor
from .common import add_command, add_group, admin, find_pipeline, positive, print_table
from .running import start_components


def _params(pairs: list[str] | None, flag: str) -> dict:
    """KEY=VALUE pairs as a dict; digits become numbers."""
    params = {}
    for pair in pairs or ():
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise CrmError("%(flag)s takes KEY=VALUE, got %(pair)r", flag=flag, pair=pair)
        value = value.strip()
        params[key.strip()] = int(value) if value.isdigit() else value
    return params


# Condition settings that are amounts of money: typed and shown in major units of the
# pipeline's currency (the rules keep minor units, as every amount is stored).
MONEY_PARAMS = ("min_amount", "max_amount")


def _money_in_minor(params: dict, currency: str, settings) -> dict:
    locale = locale_for("en", settings.phone_region)
    return {key: to_minor(str(value), currency, locale=locale) if key in MONEY_PARAMS else value
            for key, value in params.items()}


def _currency_of_stage(session, stage_id: int) -> str:
    return pipelines.get_pipeline(session, pipelines.get_stage(session, stage_id).pipeline_id) \
        .currency


def cmd_robot_add(args, settings, engine, out) -> int:
    from ..robots import rules as robot_rules

    with transaction(engine) as session:
        when = _money_in_minor(_params(args.when, "--when"),
                               _currency_of_stage(session, args.stage_id), settings)
        rule = robot_rules.create_rule(session, admin(), stage_id=args.stage_id, name=args.name,
                                       condition=args.condition,
                                       condition_params=when,
                                       action=args.action, action_params=_params(args.do, "--do"),
                                       active=not args.disabled)
        stage = pipelines.get_stage(session, rule.stage_id)
    print(f"Added robot #{rule.id} “{rule.name}” on {stage.name} (#{stage.id})"
          + (", disabled" if not rule.active else "") + ".", file=out)
    return 0


def _shown_params(params: dict, currency: str = "", locale: str = "en") -> str:
    return ", ".join(f"{key}={format_money(value, currency, locale=locale)}"
                     if key in MONEY_PARAMS and currency else f"{key}={value}"
                     for key, value in params.items())


def cmd_robot_list(args, settings, engine, out) -> int:
    from ..robots import rules as robot_rules

    locale = locale_for("en", settings.phone_region)
    with transaction(engine, read_only=True) as session:
        pipeline_id = find_pipeline(session, args.pipeline).id if args.pipeline else None
        currencies = {p.id: p.currency for p in pipelines.list_pipelines(session)}
        rows = [[str(rule.id), f"{stage.name} (#{stage.id})", rule.name,
                 f"{rule.condition} "
                 f"{_shown_params(rule.condition_params, currencies[stage.pipeline_id], locale)}"
                 .strip(),
                 f"{rule.action} {_shown_params(rule.action_params)}".strip(),
                 "yes" if rule.active else "no"]
                for rule, stage in robot_rules.list_rules(session, admin(), pipeline_id)]
    if not rows:
        print("No robots yet: add one with `pbx-crm robot add`.", file=out)
        return 0
    print_table(["ID", "STAGE", "NAME", "WHEN", "DO", "ACTIVE"], rows, out)
    return 0


def cmd_robot_active(args, settings, engine, out) -> int:
    from ..robots import rules as robot_rules

    with transaction(engine) as session:
        rule = robot_rules.set_rule_active(session, admin(), args.rule_id, args.active)
    print(f"Robot #{rule.id} “{rule.name}” is {'on' if rule.active else 'off'}.", file=out)
    return 0


def cmd_robot_delete(args, settings, engine, out) -> int:
    from ..robots import rules as robot_rules

    with transaction(engine) as session:
        name = robot_rules.get_rule(session, args.rule_id).name
        robot_rules.delete_rule(session, admin(), args.rule_id)
    print(f"Deleted robot #{args.rule_id} “{name}” and its run history.", file=out)
    return 0


def cmd_robot_runs(args, settings, engine, out) -> int:
    from ..robots import rules as robot_rules

    with transaction(engine, read_only=True) as session:
        views = robot_rules.recent_runs(session, admin(), limit=args.limit,
                                        failed_only=args.failed)
    if not views:
        print("No robot runs yet." if not args.failed else "No failed robot runs.", file=out)
        return 0
    rows = [[str(v.run.id), f"{v.run.fired_at:%Y-%m-%d %H:%M}", f"#{v.run.rule_id} {v.rule_name}",
             f"#{v.run.deal_id} {v.deal_title[:40]}", v.run.status,
             (v.run.answer or "").replace("_", " "), (v.run.error or "")[:60]]
            for v in views]
    print_table(["RUN", "FIRED (UTC)", "ROBOT", "DEAL", "STATUS", "ANSWER", "ERROR"], rows, out)
    return 0


def cmd_robots(args, settings, engine, out) -> int:
    return start_components(settings, engine, out, only="robots")


def add_robot_and_robots(commands) -> None:
    group = add_group(commands, "robot", "set up the stage robots and see what they did")
    command = add_command(
        group, "add", cmd_robot_add, "add a robot to a stage",
        description="Add a robot: when its condition holds for a deal in the stage, it acts. "
                    "It applies to the deals already in the stage too.\n"
                    "conditions (--when settings): time_in_stage (hours=N | days=N | "
                    "business_hours=N | business_days=N), no_activity (days=N), "
                    "unsorted_not_taken (minutes=N), missed_call_not_returned (minutes=N), "
                    "amount, stage_entered, call_answered, call_missed; any of them also takes "
                    "min_amount=AMOUNT and max_amount=AMOUNT (in the pipeline's currency, "
                    "e.g. 2500000 or 2.500.000)\n"
                    "actions (--do settings): notify_owner (message=...), notify_heads "
                    "(message=...), create_task (title=..., due_hours=N), set_priority "
                    "(priority=low|normal|high), move_to_stage (stage=NAME | stage_id=N, "
                    "lost_reason=...), reassign (login=LOGIN), call_owner\n"
                    "  pbx-crm robot add 3 --name 'Proposal waits' --condition time_in_stage "
                    "--when business_days=2 --action notify_owner")
    command.add_argument("stage_id", type=int, metavar="STAGE_ID",
                         help="the stage's id, from `pipeline list`")
    command.add_argument("--name", required=True, help="what the robot is for, as users read it")
    command.add_argument("--condition", required=True, metavar="KIND", help="when it fires")
    command.add_argument("--when", action="append", metavar="KEY=VALUE",
                         help="a setting of the condition; repeat for several")
    command.add_argument("--action", required=True, metavar="KIND", help="what it does")
    command.add_argument("--do", action="append", metavar="KEY=VALUE",
                         help="a setting of the action; repeat for several")
    command.add_argument("--disabled", action="store_true", help="add it switched off")
    command = add_command(group, "list", cmd_robot_list, "list the robots, stage by stage")
    command.add_argument("--pipeline", metavar="NAME", help="only this pipeline's (name or id)")
    for name, active, help in (("enable", True, "switch a robot on (it catches up)"),
                               ("disable", False, "switch a robot off, keeping its history")):
        command = add_command(group, name, cmd_robot_active, help)
        command.add_argument("rule_id", type=int, metavar="ROBOT_ID")
        command.set_defaults(active=active)
    command = add_command(group, "delete", cmd_robot_delete,
                          "delete a robot and its run history (disable it to keep the history)")
    command.add_argument("rule_id", type=int, metavar="ROBOT_ID")
    command = add_command(group, "runs", cmd_robot_runs,
                          "what the robots did lately, failures too")
    command.add_argument("--limit", type=positive(int), default=30, metavar="N",
                         help="how many runs, newest first (default 30)")
    command.add_argument("--failed", action="store_true", help="only the failed runs")
    add_command(
        commands, "robots", cmd_robots, "run the robot scheduler alone",
        description="Run the stage robots on their clock (APScheduler): a pass over every "
                    "rule each robot_pass_seconds, telephony triggers each "
                    "robot_trigger_seconds. Several may run against one PostgreSQL: no robot "
                    "fires twice.")
