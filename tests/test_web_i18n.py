"""Translations and formatting: every UI string has an Indonesian translation, and money is
shown as Babel shows it, in each locale."""

from __future__ import annotations

import random
from decimal import Decimal
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.numbers import format_currency

from pbx_crm.errors import ValidationError
from pbx_crm.rules.money import format_money, minor_digits, to_minor
from pbx_crm.webui.app import load_translations

WEBUI = Path(__file__).resolve().parents[1] / "webui"
METHOD_MAP = [("**.py", "python"), ("templates/**.html", "jinja2")]
OPTIONS = {"templates/**.html": {"extensions": "jinja2.ext.i18n"}}


def ui_strings() -> set[str]:
    found = set()
    for _, _, message, _, _ in extract_from_dir(str(WEBUI), METHOD_MAP, OPTIONS,
                                                keywords={"_": None, "gettext": None}):
        found.add(message if isinstance(message, str) else message[0])
    return found


def test_every_ui_string_has_an_indonesian_translation():
    indonesian = load_translations("id")
    strings = ui_strings()
    assert len(strings) > 80
    missing = sorted(s for s in strings if indonesian.gettext(s) == s
                     and s not in {"Pipeline", "normal"})
    assert missing == []


@pytest.mark.parametrize("locale", ["en", "id", "de", "fr", "ja", "en_IN", "ar"])
@pytest.mark.parametrize("currency", ["IDR", "USD", "EUR", "JPY", "KWD"])
def test_money_is_shown_as_babel_shows_it(locale, currency):
    rng = random.Random(f"{locale}{currency}")
    for amount in [0, 5, 99, 100, 12345, 150_000_000] + [rng.randrange(10**14)
                                                        for _ in range(20)]:
        expected = format_currency(Decimal(amount).scaleb(-minor_digits(currency)), currency,
                                   locale=locale)
        assert format_money(amount, currency, locale=locale) == expected


@pytest.mark.parametrize("text, locale, currency, minor", [
    ("1.500.000", "id", "IDR", 150_000_000), ("1,500,000.50", "en", "USD", 150_000_050),
    ("", "en", "IDR", 0), ("12", "en", "JPY", 12), ("2,5", "id", "USD", 250),
])
def test_amounts_are_read_in_the_users_locale(text, locale, currency, minor):
    assert to_minor(text, currency, locale=locale) == minor


@pytest.mark.parametrize("text", ["abc", "1.2.3", "-5", "1.234", "1e9"])
def test_unreadable_amounts_are_refused(text):
    with pytest.raises(ValidationError):
        to_minor(text, "IDR", locale="en")


def test_an_english_user_reads_money_and_dates_as_written_in_the_company_s_country():
    """English in Indonesia: rupiah with dots and day-first dates, as the CLI prints them; an
    amount typed either way is read."""
    from pbx_crm.rules.money import format_money, locale_for, to_minor

    locale = locale_for("en", "ID")
    assert locale == "en_ID"
    assert format_money(9_600_000_000, "IDR", locale=locale) == "Rp96.000.000"
    assert to_minor("3.000.000", "IDR", locale=locale) == to_minor("3,000,000", "IDR",
                                                                     locale=locale)
    assert locale_for("id", "ID") == "id_ID" and locale_for("en", "AQ") == "en"
