"""Recognising and normalising caller numbers.

This module owns one question: what is this phone number? Given whatever a trunk, a form or a
CSV file calls a number, it answers with a real external number in E.164, a withheld number,
one of our own extensions, or garbage with a reason a person can read. The AGI hooks call
``classify_caller`` on every incoming call, the contact services and the CSV import call
``normalize_number`` on what people type, and display code calls ``format_number``. It knows
nothing of the database, the web or the PBX beyond the shapes of the values Asterisk hands over.
"""

from __future__ import annotations

import enum
import functools
import re
from dataclasses import dataclass

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberFormat, ValidationResult

from pbx_crm.errors import Phrase, ValidationError

# A caller ID longer than this is not a number; deciding on the head keeps a 10 KB value cheap.
_SCAN_LIMIT = 64
_E164_MAX_DIGITS = 15
_SHOWN_IN_MESSAGES = 40

# What trunks send instead of a withheld number: AGI shows "unknown", AMI "<unknown>".
WITHHELD_WORDS = frozenset(
    {"", "anonymous", "unknown", "<unknown>", "restricted", "private", "withheld", "unavailable"}
)
# agi_callingpres keeps presentation in bits 0x60; the screening bits below them do not matter.
_PRESENTATION_BITS = 0x60
_PRESENTATION_WITHHELD = (0x20, 0x40)  # restricted, unavailable

# SIP trunks may hand over a whole URI; only its user part is the number.
_URI = re.compile(r"(?:sips?|tel):([^@;]*)([@;])?", re.IGNORECASE)
# Digits and the separators people write. Anything else is refused, never stripped, so that
# "'; DROP TABLE deals;--" cannot be "cleaned" into a number. [0-9] rather than \d: Unicode
# digits (Arabic-Indic, full-width) are refused too, as no trunk sends them.
_DIALLABLE = re.compile(r"\+?[0-9 ().\-]*")

# Reasons are phrases: plain English in logs, translated in a refusal that gives one.
_TOO_LONG = Phrase("too long to be a phone number")
_REASONS = {
    ValidationResult.TOO_SHORT: Phrase("too short to be a phone number"),
    ValidationResult.TOO_LONG: _TOO_LONG,
    ValidationResult.INVALID_COUNTRY_CODE: Phrase("has an unknown country code"),
}


class CallerKind(str, enum.Enum):
    NUMBER = "number"  # a real external number: e164 is set
    ANONYMOUS = "anonymous"  # withheld or absent
    INTERNAL = "internal"  # one of our own extensions: extension is set
    INVALID = "invalid"  # garbage: reason is set


@dataclass(frozen=True)
class ExtensionPlan:
    """Which short numbers are our own extensions: inclusive digit ranges like 100-199."""

    ranges: tuple[tuple[str, str], ...]

    @classmethod
    def parse(cls, text: str) -> ExtensionPlan:
        """Read "100-199, 2000-2999, 555"; an empty text means we have no extensions."""
        ranges = []
        for entry in filter(None, (entry.strip() for entry in text.split(","))):
            low, dash, high = (part.strip() for part in entry.partition("-"))
            high = high if dash else low
            if not (_is_digits(low) and _is_digits(high)):
                raise ValidationError('"%(entry)s" is not an extension or a range such as '
                                      '100-199', entry=entry, field="internal_extensions")
            # Extensions compare as strings, which orders them right only at equal length.
            if len(low) != len(high):
                raise ValidationError('extension range "%(entry)s" mixes lengths; use one '
                                      'range per length', entry=entry,
                                      field="internal_extensions")
            if low > high:
                raise ValidationError('extension range "%(entry)s" runs backwards',
                                      entry=entry, field="internal_extensions")
            ranges.append((low, high))
        return cls(tuple(ranges))

    def is_extension(self, digits: str) -> bool:
        # Equal length first: "0101" must never fall inside "100-199".
        return _is_digits(digits) and any(
            len(low) == len(digits) and low <= digits <= high for low, high in self.ranges
        )


@dataclass(frozen=True)
class CallerNumber:
    raw: str  # exactly as received ('' for None)
    kind: CallerKind
    e164: str | None = None
    extension: str | None = None
    reason: str | None = None  # for a person to read, when INVALID


def classify_caller(
    raw: str | None, *, region: str, extensions: ExtensionPlan, presentation: int | None = None
) -> CallerNumber:
    """Decide what a caller ID is. Never raises: a call must go on whatever the trunk sent."""
    received = "" if raw is None else raw
    # A withheld presentation wins over everything, even an extension: the caller asked not to
    # be shown, and the trunk may still pass the number along.
    if _presentation_withheld(presentation):
        return CallerNumber(received, CallerKind.ANONYMOUS)
    text = _unwrap(received)
    if text is None:
        return CallerNumber(received, CallerKind.INVALID, reason=_TOO_LONG)
    # Withheld words before parsing: "unknown" must not reach phonenumbers as letters.
    if text.lower() in WITHHELD_WORDS:
        return CallerNumber(received, CallerKind.ANONYMOUS)
    # Extensions before parsing: phonenumbers reads 101 in DE as +49101, a "possible" number.
    # Only the plan decides what is internal, never the length.
    compact = text.replace(" ", "")
    if extensions.is_extension(compact):
        return CallerNumber(received, CallerKind.INTERNAL, extension=compact)
    e164, reason = _to_e164(text, (region or "").upper())
    if e164 is None:
        return CallerNumber(received, CallerKind.INVALID, reason=reason)
    return CallerNumber(received, CallerKind.NUMBER, e164=e164)


def normalize_number(raw: str, *, region: str) -> str:
    """Turn a typed phone number into E.164, or refuse it with a message naming the input."""
    # No extension plan: a contact's phone is always an external number.
    caller = classify_caller(raw, region=region, extensions=_NO_EXTENSIONS)
    if caller.kind is CallerKind.NUMBER:
        return caller.e164
    shown = (raw or "").strip()
    if len(shown) > _SHOWN_IN_MESSAGES:
        shown = shown[:_SHOWN_IN_MESSAGES] + "…"
    if not shown:
        raise ValidationError("an empty value is not a phone number", field="phone")
    if caller.reason:
        raise ValidationError('"%(number)s" is not a phone number: %(reason)s', number=shown,
                              reason=caller.reason, field="phone")
    raise ValidationError('"%(number)s" is not a phone number', number=shown, field="phone")


def format_number(e164: str, *, region: str) -> str:
    """Show a stored number the way a person in ``region`` would dial it."""
    try:
        number = phonenumbers.parse(e164, None)
    except NumberParseException:
        shown = e164[:_SHOWN_IN_MESSAGES]
        raise ValidationError('"%(number)s" is not an E.164 number', number=shown,
                              field="phone") from None
    # Same country code rather than same region: national format dials across a shared code
    # (a Canadian number from the US), and a region name would split those.
    home = number.country_code == phonenumbers.country_code_for_region((region or "").upper())
    return phonenumbers.format_number(
        number, PhoneNumberFormat.NATIONAL if home else PhoneNumberFormat.INTERNATIONAL
    )


_NO_EXTENSIONS = ExtensionPlan(())


def _is_digits(text: str) -> bool:
    return text.isascii() and text.isdigit()


def _presentation_withheld(presentation: object) -> bool:
    if presentation is None:
        return False
    try:  # AGI hands over text; accept "35" as well as 35
        value = int(presentation)
    except (TypeError, ValueError):
        return False
    return (value & _PRESENTATION_BITS) in _PRESENTATION_WITHHELD


def _unwrap(received: str) -> str | None:
    """The part of the value that may be a number, or None when it is too long to be one."""
    head = received[:_SCAN_LIMIT]
    text = head.strip().strip("\"'").strip()
    uri = _URI.match(text)
    # A URI may run past the limit on its domain, as long as the user part ended before it.
    if uri and (uri.group(2) or len(received) <= _SCAN_LIMIT):
        return uri.group(1).strip()
    return text if len(received) <= _SCAN_LIMIT else None


# Reading a number costs about half a millisecond on the call path (phonenumbers), and the
# same callers call again and again: the readings of the latest few thousand are kept.
@functools.lru_cache(maxsize=8192)
def _to_e164(text: str, region: str) -> tuple[str | None, str | None]:
    """(E.164, None) for the best reading of ``text``, or (None, reason)."""
    if not _DIALLABLE.fullmatch(text):
        return None, Phrase("contains characters that are not part of a phone number")
    digits = "".join(filter(str.isdigit, text))  # only ASCII digits passed _DIALLABLE
    if not digits:
        return None, Phrase("has no digits")
    # Country codes never start with 0, so leading zeros are prefixes, not part of the number.
    if len(digits.lstrip("0")) > _E164_MAX_DIGITS:
        return None, Phrase("has more than 15 digits")  # _E164_MAX_DIGITS
    if text.startswith("+"):
        readings = ["+" + digits]
    else:
        readings = _readings(digits, region)
        if digits.startswith("0"):  # a PBX may prefix its outside-line 0 to what it passes on
            readings += _readings(digits[1:], region)
    numbers = []
    for reading in readings:
        try:
            number = phonenumbers.parse(reading, None if reading.startswith("+") else region)
        except NumberParseException:
            continue
        if len(str(number.country_code) + str(number.national_number)) <= _E164_MAX_DIGITS:
            numbers.append(number)
    if not numbers:
        return None, Phrase("not a phone number")
    # Metadata lags behind new number ranges, so a merely possible number beats refusing a real
    # caller; but only when no reading is valid, and never a local-only one (+49101 from "101").
    possible = ValidationResult.IS_POSSIBLE
    best = next((n for n in numbers if phonenumbers.is_valid_number(n)), None) or next(
        (n for n in numbers if phonenumbers.is_possible_number_with_reason(n) == possible), None
    )
    if best is None:
        why = phonenumbers.is_possible_number_with_reason(numbers[0])
        return None, _REASONS.get(why, Phrase("not a valid phone number"))
    return phonenumbers.format_number(best, PhoneNumberFormat.E164), None


def _readings(digits: str, region: str) -> list[str]:
    """Ways to read digits without a '+', most likely first."""
    if digits.startswith("00"):
        # 00 is the international prefix on most trunks, even where the region's own differs
        # (Indonesia's metadata knows only 008/009); a national 00 is next to unheard of.
        return ["+" + digits[2:], digits]
    readings = [digits]  # national, with or without trunk prefix; phonenumbers knows the IDD
    code = phonenumbers.country_code_for_region(region)
    if code and digits.startswith(str(code)):  # E.164 that lost its '+'
        readings.append("+" + digits)
    return readings
