"""Amounts of money: stored as whole minor units (ISO 4217), read and shown in a locale.

``to_minor`` reads what a person typed ("1.500.000" in Indonesian, "1,500,000.50" in English)
with Babel's locale rules and refuses what it cannot read exactly; ``format_money`` shows an
amount in the reader's locale, rupiah without sen, as people write them.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from babel import Locale, UnknownLocaleError
from babel.numbers import (
    NumberFormatError,
    format_currency,
    get_currency_precision,
    parse_decimal,
)

from ..errors import ValidationError

# ISO 4217 minor units where not 2.
_MINOR_DIGITS = {"JPY": 0, "KRW": 0, "VND": 0, "CLP": 0, "ISK": 0, "BHD": 3, "KWD": 3,
                 "OMR": 3, "TND": 3}


@functools.lru_cache(maxsize=64)
def locale_for(language: str, region: str) -> str:
    """The locale money and dates are shown in: the reader's language as written in the
    company's country ("en_ID": Rp96.000.000 and 7 Dec 2026, not the US's IDR96,000,000 and
    Dec 7, 2026), or the language alone where Babel knows no such pair."""
    try:
        return str(Locale.parse(f"{language}_{region}"))
    except (UnknownLocaleError, ValueError):
        return language


def minor_digits(currency: str) -> int:
    return _MINOR_DIGITS.get(currency.upper(), 2)


def to_minor(text: str, currency: str, *, locale: str) -> int:
    """Typed amount -> minor units; empty means zero."""
    text = (text or "").strip().replace("\u00a0", " ").replace(" ", "")
    if not text:
        return 0
    if any(char.isalpha() for char in text):  # "1e9" would pass as a number otherwise
        raise ValidationError("“%(text)s” is not an amount.", text=text[:40], field="amount")
    try:
        value = _parse_typed(text, locale)
    except NumberFormatError as error:
        suggestion = getattr(error, "suggestions", None)
        if suggestion:
            raise ValidationError("“%(text)s” is not an amount (did you mean %(suggestion)s?).",
                                  text=text[:40], suggestion=suggestion[0], field="amount") \
                from None
        raise ValidationError("“%(text)s” is not an amount.", text=text[:40], field="amount") \
            from None
    except InvalidOperation:
        raise ValidationError("“%(text)s” is not an amount.", text=text[:40], field="amount") \
            from None
    minor = value.scaleb(minor_digits(currency))
    if minor != minor.to_integral_value():
        raise ValidationError("%(currency)s amounts have at most %(digits)s decimals.",
                              currency=currency, digits=minor_digits(currency), field="amount")
    if minor < 0:
        raise ValidationError("The amount must be zero or more.", field="amount")
    return int(minor)


def _parse_typed(text: str, locale: str) -> Decimal:
    """``text`` read in ``locale``; in English outside the US ("en_ID" groups with dots) an
    amount written the US way ("3,000,000") is read that way too, as English speakers there
    write both."""
    try:
        return parse_decimal(text, locale=locale, strict=True)
    except NumberFormatError:
        if locale == "en" or not locale.startswith("en_"):
            raise
        try:
            return parse_decimal(text, locale="en", strict=True)
        except NumberFormatError:
            pass
        raise


def format_money(amount_minor: int, currency: str, *, locale: str) -> str:
    """Babel's ``format_currency`` for ``locale``, at a fraction of its cost: a board shows
    hundreds of amounts, so the locale's layout is worked out once per currency (from Babel
    itself) and then applied with plain string formatting."""
    layout = _layout(locale, currency.upper())
    major = Decimal(amount_minor).scaleb(-minor_digits(currency))
    if layout is None:
        return format_currency(major, currency.upper(), locale=locale)
    digits = f"{major:,.{layout.decimals}f}"
    if layout.group != "," or layout.decimal != ".":
        digits = digits.translate({ord(","): layout.group, ord("."): layout.decimal})
    return f"{layout.prefix}{digits}{layout.suffix}"


@dataclass(frozen=True)
class _Layout:
    prefix: str
    suffix: str
    group: str
    decimal: str
    decimals: int


@functools.lru_cache(maxsize=256)
def _layout(locale: str, currency: str) -> _Layout | None:
    """The locale's layout for ``currency``, or None when it is not "groups of three" (the
    Indian lakh grouping, say): those amounts go through Babel every time."""
    decimals = get_currency_precision(currency)
    value = Decimal("1234567.891").quantize(Decimal(1).scaleb(-decimals))
    sample = format_currency(value, currency, locale=locale)
    start = sample.index("1")
    end = max(i for i, char in enumerate(sample) if char.isdigit()) + 1
    number = sample[start:end]
    group = number[1] if not number[1].isdigit() else ""
    decimal = number[-decimals - 1] if decimals else "."
    layout = _Layout(prefix=sample[:start], suffix=sample[end:], group=group, decimal=decimal,
                     decimals=decimals)
    expected = f"{value:,.{decimals}f}".translate({ord(","): group, ord("."): decimal})
    return layout if expected == number else None


def plain_amount(amount_minor: int, currency: str, *, locale: str) -> str:
    """The amount as a form field shows it for editing: digits in the locale, no symbol."""
    from babel.numbers import format_decimal

    digits = minor_digits(currency)
    major = Decimal(amount_minor).scaleb(-digits)
    shown = "#,##0" if major == major.to_integral_value() else "#,##0." + "0" * digits
    return format_decimal(major, format=shown, locale=locale)
