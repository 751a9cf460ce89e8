"""Refusals as gettext keeps text: an English template with named values, the English message
for logs and the CLI, and the same refusal in a catalog's language for the web UI."""

from __future__ import annotations

import ast
import pickle
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po
from babel.util import pathmatch

from pbx_crm.errors import (
    N_, Conflict, CrmError, NotFound, NumberConflict, Phrase, ValidationError,
)

INDONESIAN = {
    "No stage #%(stage_id)s.": "Tidak ada tahap #%(stage_id)s.",
    "Unknown setting(s) for %(what)s: %(unknown)s.": "Pengaturan %(what)s tidak dikenal: "
                                                      "%(unknown)s.",
    "time in stage": "lama di tahap",
    "Broken %(nothing)s.": "Rusak %(apa)s.",
}


def indonesian(message: str) -> str:
    return INDONESIAN.get(message, message)


def test_a_refusal_keeps_its_template_and_values_and_reads_in_english():
    error = NotFound("No stage #%(stage_id)s.", stage_id=7)
    assert (error.template, error.values) == ("No stage #%(stage_id)s.", {"stage_id": 7})
    assert error.message == str(error) == "No stage #7."
    assert error.status == 404


def test_a_refusal_reads_in_a_catalogs_language():
    assert NotFound("No stage #%(stage_id)s.", stage_id=7).translated(indonesian) == \
        "Tidak ada tahap #7."


def test_a_phrase_among_the_values_is_translated_with_the_message():
    error = ValidationError("Unknown setting(s) for %(what)s: %(unknown)s.",
                            what=Phrase("time in stage"), unknown="colour", field="when")
    assert error.message == "Unknown setting(s) for time in stage: colour."
    assert error.translated(indonesian) == "Pengaturan lama di tahap tidak dikenal: colour."
    assert error.field == "when"


def test_names_and_typed_text_are_never_translated():
    # What the user typed may be a msgid by chance; only phrases are looked up.
    error = ValidationError("Unknown setting(s) for %(what)s: %(unknown)s.",
                            what="time in stage", unknown="time in stage")
    assert error.translated(indonesian) == ("Pengaturan time in stage tidak dikenal: "
                                            "time in stage.")


def test_a_plain_message_stays_as_given_percent_signs_included():
    error = CrmError("Losses up 50% this week")
    assert error.message == "Losses up 50% this week"
    assert error.translated(indonesian) == "Losses up 50% this week"
    assert Conflict(N_("No stage #%(stage_id)s.")).message == "No stage #%(stage_id)s."


def test_a_translation_that_does_not_fit_the_values_falls_back_to_english():
    error = CrmError("Broken %(nothing)s.", nothing="here")
    assert error.translated(indonesian) == "Broken here."


def test_subclasses_keep_their_own_keywords():
    error = NumberConflict("%(number)s belongs to %(count)s contacts.", number="+62811",
                           count=2, contact_ids=[1, 2])
    assert (error.message, error.contact_ids) == ("+62811 belongs to 2 contacts.", [1, 2])


def test_a_refusal_survives_pickling_in_english():
    error = pickle.loads(pickle.dumps(NotFound("No stage #%(stage_id)s.", stage_id=7)))
    assert error.message == "No stage #7."


def test_a_template_with_missing_values_is_a_programming_error():
    with pytest.raises(KeyError):
        NotFound("No stage #%(stage_id)s.", deal_id=7)


# --- the catalogs: what babel extracts is what the Indonesian catalog translates ------------

ROOT = Path(__file__).resolve().parents[1]
BABEL_CFG = ROOT / "webui" / "locale" / "babel.cfg"
INDONESIAN_PO = ROOT / "webui" / "locale" / "id" / "LC_MESSAGES" / "messages.po"
# Files whose refusals are still f-strings (worked on elsewhere when this list was made):
# convert them as the others were (a literal template, named values) and strike them off.
NOT_YET_CONVERTED = {"pbx_crm/funnel/contacts.py"}


def _mapping():
    with BABEL_CFG.open() as file:
        return parse_mapping_cfg(file)


def _extracted_files() -> list[tuple[str, set[str]]]:
    """The Python files babel reads for the catalogs, with the names of their refusals."""
    method_map, options_map = _mapping()
    found = []
    for path in sorted(ROOT.glob("*/**/*.py")):
        relative = path.relative_to(ROOT).as_posix()
        pattern, method = next(((p, m) for p, m in method_map if pathmatch(p, relative)),
                               (None, None))
        if method == "python":
            found.append((relative, set(options_map[pattern].get("keywords", {})) - {"Phrase"}))
    return found


def _unextractable_refusals() -> dict[str, list[tuple[int, int]]]:
    """Per file, the lines of refusals whose message is not one literal template (an
    f-string, a concatenation, a choice between two): babel cannot extract them whole."""
    found: dict[str, list[tuple[int, int]]] = {}
    for relative, names in _extracted_files():
        for node in ast.walk(ast.parse((ROOT / relative).read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Call) and node.args
                    and getattr(node.func, "id", getattr(node.func, "attr", None)) in names
                    and isinstance(node.args[0], (ast.JoinedStr, ast.BinOp, ast.IfExp))):
                found.setdefault(relative, []).append((node.lineno, node.end_lineno))
    return found


def test_every_refusal_that_reaches_a_user_is_one_literal_template():
    assert sorted(set(_unextractable_refusals()) - NOT_YET_CONVERTED) == []


def test_every_extracted_message_has_an_indonesian_translation():
    method_map, options_map = _mapping()
    with INDONESIAN_PO.open("rb") as file:
        catalog = read_po(file, locale="id")
    # Pieces of the refusals not converted yet: babel extracts the literal text beside an
    # f-string, which is no message of its own.
    pieces = _unextractable_refusals()
    missing = {}
    for filename, line, message, _, _ in extract_from_dir(str(ROOT), method_map, options_map):
        msgid = message if isinstance(message, str) else message[0]
        if any(first <= line <= last for first, last in pieces.get(filename, ())):
            continue
        entry = catalog.get(msgid)
        strings = entry.string if entry is not None else ""
        if not all(strings if isinstance(strings, tuple) else [strings]):
            missing.setdefault(msgid, f"{filename}:{line}")
    assert missing == {}


def test_the_refusals_of_the_services_are_extracted():
    method_map, options_map = _mapping()
    found = {message for _, _, message, _, _ in extract_from_dir(
        str(ROOT), method_map, options_map)}
    assert {"No stage #%(stage_id)s.", "Only a head may %(what)s.", "time in stage",
            "Choose %(what)s."} <= found
    assert "%(path)s: no such file" not in found  # the CLI speaks English only
