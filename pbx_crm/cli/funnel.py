"""``pbx-crm pipeline|stage ...``, ``contacts import`` and ``board rebuild-totals``: setting up
the funnels, bringing in a CSV phone book, and recounting the board's kept totals.
"""

from __future__ import annotations

import csv
import io
import sys
from pathlib import Path

from tqdm import tqdm

from ..db import transaction
from ..errors import CrmError
from ..funnel import pipelines
from ..funnel.contacts import PHONE_COLUMNS, import_contacts
from .common import add_command, add_group, admin, find_pipeline


# --- pipelines and stages ----------------------------------------------------------------


def cmd_pipeline_add(args, settings, engine, out) -> int:
    stages = [(name, "open") for name in args.stage]
    if args.won_stage:
        stages.append((args.won_stage, "won"))
    if args.lost_stage:
        stages.append((args.lost_stage, "lost"))
    with transaction(engine) as session:
        pipeline = pipelines.create_pipeline(
            session, admin(), name=args.name, stages=stages,
            currency=args.currency or settings.currency, is_default=args.default or None)
        _print_pipeline(session, pipeline, out)
    return 0


def cmd_pipeline_list(args, settings, engine, out) -> int:
    with transaction(engine, read_only=True) as session:
        found = pipelines.list_pipelines(session)
        if not found:
            print("No pipelines yet: add one with `pbx-crm pipeline add`.", file=out)
        for i, pipeline in enumerate(found):
            if i:
                print(file=out)
            _print_pipeline(session, pipeline, out)
    return 0


def _print_pipeline(session, pipeline, out) -> None:
    marks = [pipeline.currency] + (["default"] if pipeline.is_default else [])
    print(f"{pipeline.name} (#{pipeline.id}, {', '.join(marks)})", file=out)
    for stage in pipelines.stages_of(session, pipeline.id):
        kind = "unsorted" if stage.is_unsorted else "" if stage.kind == "open" else stage.kind
        count = pipelines.stage_deal_count(session, stage.id)
        print(f"  {stage.position:>2}. {stage.name:<28} #{stage.id:<5} {kind:<9} "
              f"{count} deal{'s' if count != 1 else ''}".rstrip(), file=out)


def cmd_stage_add(args, settings, engine, out) -> int:
    with transaction(engine) as session:
        pipeline = find_pipeline(session, args.pipeline)
        stage = pipelines.add_stage(session, admin(), pipeline.id, name=args.name,
                                    kind=args.kind, position=args.position)
        _print_pipeline(session, pipeline, out)
    print(f"Added stage #{stage.id} “{stage.name}”.", file=out)
    return 0


def cmd_stage_rename(args, settings, engine, out) -> int:
    with transaction(engine) as session:
        before = pipelines.get_stage(session, args.stage_id).name
        stage = pipelines.rename_stage(session, admin(), args.stage_id, args.name)
    print(f"Stage #{stage.id} “{before}” is now “{stage.name}”.", file=out)
    return 0


def cmd_stage_reorder(args, settings, engine, out) -> int:
    with transaction(engine) as session:
        pipeline = find_pipeline(session, args.pipeline)
        pipelines.reorder_stages(session, admin(), pipeline.id, args.stage_ids)
        _print_pipeline(session, pipeline, out)
    return 0


# --- contacts -----------------------------------------------------------------------------


def read_phone_book(path: Path) -> list[tuple[int, dict[str, str]]]:
    """(line number, row) for each non-empty row of a CSV phone book with a header row.

    UTF-8 (with or without the BOM spreadsheets add); the delimiter, ``,`` or ``;``, is the one
    the header row uses most. Line numbers are the file's own, so a report points at the row a
    person can find in an editor even after blank lines or quoted line breaks.
    """
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        raise CrmError("%(path)s: no such file", path=path) from None
    except IsADirectoryError:
        raise CrmError("%(path)s is a directory, not a CSV file", path=path) from None
    except PermissionError:
        raise CrmError("%(path)s: permission denied", path=path) from None
    except UnicodeDecodeError as error:
        raise CrmError("%(path)s is not UTF-8 text (byte %(byte)s); save it as “CSV UTF-8” "
                       "and try again", path=path, byte=error.start) from None
    header_line = next((line for line in text.splitlines() if line.strip()), "")
    delimiter = ";" if header_line.count(";") > header_line.count(",") else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    header, lines_read = None, 0
    rows: list[tuple[int, dict[str, str]]] = []
    try:
        for cells in reader:
            line, lines_read = lines_read + 1, reader.line_num
            if not any(cell.strip() for cell in cells):
                continue
            if header is None:
                header = [cell.strip().lower() for cell in cells]
                continue
            rows.append((line, dict(zip(header, cells))))
    except csv.Error as error:
        raise CrmError("%(path)s, line %(line)s: %(error)s", path=path, line=reader.line_num,
                       error=error) from None
    if header is None:
        raise CrmError("%(path)s is empty; it needs a header row such as: "
                       "name,phone,company,email", path=path)
    if "name" not in header:
        raise CrmError("%(path)s has no “name” column in its first row (%(header)s); it needs "
                       "a header row such as: name,phone,company,email", path=path,
                       header=", ".join(filter(None, header))[:200])
    if not set(PHONE_COLUMNS) & set(header):
        raise CrmError("%(path)s has no phone column (one of %(columns)s) in its first row",
                       path=path, columns=", ".join(PHONE_COLUMNS))
    return rows


def cmd_contacts_import(args, settings, engine, out) -> int:
    path = Path(args.file)
    rows = read_phone_book(path)
    lines = [line for line, _ in rows]
    with tqdm(total=len(rows), unit="row", desc="Checking", file=sys.stderr,
              disable=None, leave=False) as bar:
        with transaction(engine) as session:
            # first_line=0 makes each reported "line" the row's index; mapped back below.
            report = import_contacts(session, admin(), (row for _, row in rows),
                                     region=settings.phone_region,
                                     skip_invalid=args.skip_invalid, first_line=0,
                                     progress=bar.update)
    for index, reason in report.rejected:
        print(f"line {lines[index]}: {reason}", file=out)
    if report.rejected and not args.skip_invalid:
        if len(report.rejected) == 1:
            raise CrmError("1 row of %(total)s rejected; nothing was imported. Fix it, or pass "
                           "--skip-invalid to import the other rows.", total=len(rows))
        raise CrmError("%(count)s rows of %(total)s rejected; nothing was imported. Fix them, "
                       "or pass --skip-invalid to import the other rows.",
                       count=len(report.rejected), total=len(rows))
    skipped = f"; skipped {len(report.rejected)} rejected row(s)" if report.rejected else ""
    print(f"Imported {report.imported} contact{'s' if report.imported != 1 else ''} "
          f"from {path}{skipped}.", file=out)
    return 0


# --- the board ------------------------------------------------------------------------------


def cmd_board_rebuild_totals(args, settings, engine, out) -> int:
    from ..funnel.stage_totals import rebuild

    with transaction(engine) as session:
        rows = rebuild(session)
    print(f"Recounted the board's column totals from the deals: {rows:,} rows", file=out)
    return 0


# --- the parser ---------------------------------------------------------------------------


def add_pipeline_stage_contacts(commands) -> None:
    group = add_group(commands, "pipeline", "set up the sales funnels (boards)")
    command = add_command(
        group, "add", cmd_pipeline_add, "add a pipeline with its stages",
        description="Add a pipeline. Unsorted (where calls drop new deals) comes first, then "
                    "the --stage columns in order, then the outcomes:\n"
                    "  pbx-crm pipeline add Sales --stage Opportunity "
                    "--stage 'Commercial proposal' --won-stage Won")
    command.add_argument("name", help="the pipeline's name")
    command.add_argument("--stage", action="append", required=True, metavar="NAME",
                         help="a working stage; repeat in board order")
    command.add_argument("--won-stage", metavar="NAME",
                         help="name of the won outcome (default Won)")
    command.add_argument("--lost-stage", metavar="NAME",
                         help="name of the lost outcome (default Lost)")
    command.add_argument("--currency", metavar="CODE",
                         help="three-letter currency of its amounts (default: the setting, "
                              "IDR)")
    command.add_argument("--default", action="store_true",
                         help="make it the pipeline inbound calls land in (the first one is)")
    add_command(group, "list", cmd_pipeline_list,
                "list pipelines with their stages in board order, with stage ids")

    group = add_group(commands, "stage", "change the stages (columns) of a pipeline")
    command = add_command(group, "add", cmd_stage_add, "add a stage to a pipeline")
    command.add_argument("pipeline", help="pipeline name (or id)")
    command.add_argument("name", help="the stage's name")
    command.add_argument("--kind", choices=("open", "won", "lost"), default="open",
                         help="a working stage, or an outcome (default open)")
    command.add_argument("--position", type=int, metavar="N",
                         help="its place as `pipeline list` numbers them (Unsorted is 0); "
                              "default: after the working stages")
    command = add_command(group, "rename", cmd_stage_rename, "rename a stage")
    command.add_argument("stage_id", type=int, metavar="STAGE_ID",
                         help="the stage's id, from `pipeline list`")
    command.add_argument("name", help="the new name")
    command = add_command(group, "reorder", cmd_stage_reorder,
                          "put a pipeline's stages in a new order",
                          description="Put a pipeline's stages in a new order: give every "
                                      "stage id once, Unsorted first.")
    command.add_argument("pipeline", help="pipeline name (or id)")
    command.add_argument("stage_ids", type=int, nargs="+", metavar="STAGE_ID",
                         help="all stage ids of the pipeline, in the new order")

    group = add_group(commands, "contacts", "bring in contacts")
    command = add_command(
        group, "import", cmd_contacts_import, "import a CSV phone book",
        description="Import contacts from a CSV file (UTF-8, `,` or `;` between fields) whose "
                    "first row names the columns:\n  name, phone (or phones, mobile, "
                    "work_phone, home_phone; several numbers split by `;`), company, email\n"
                    "Every row is checked first; if any is rejected, nothing is imported "
                    "unless --skip-invalid.\nExample: docs/examples/phonebook.csv")
    command.add_argument("file", metavar="FILE.csv", help="the phone book")
    command.add_argument("--skip-invalid", action="store_true",
                         help="import the good rows and report the rejected ones")


def add_board(commands) -> None:
    group = add_group(commands, "board", "the Kanban board's kept figures")
    add_command(group, "rebuild-totals", cmd_board_rebuild_totals,
                "recount the board's column totals from the deals",
                description="Recount the deals and money per stage and owner the board reads "
                            "from the deals themselves: after writing deals outside the deal "
                            "services (a bulk import, a manual SQL fix).")
