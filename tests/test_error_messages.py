"""Refusals as gettext keeps text: an English template with named values, the English message
for logs and the CLI, and the same refusal in a catalog's language for the web UI."""

from __future__ import annotations

import pickle

import pytest

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
