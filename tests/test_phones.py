"""Caller numbers as real Asterisk trunks deliver them, and phone numbers as people type them."""

import pytest

from pbx_crm.errors import ValidationError
from pbx_crm.rules.phones import (
    CallerKind, CallerNumber, ExtensionPlan, classify_caller, format_number, normalize_number,
)

NUMBER, ANONYMOUS, INTERNAL, INVALID = (
    CallerKind.NUMBER,
    CallerKind.ANONYMOUS,
    CallerKind.INTERNAL,
    CallerKind.INVALID,
)
JAKARTA_PLAN = ExtensionPlan.parse("100-199,2000-2999")
NO_EXTENSIONS = ExtensionPlan.parse("")
MOBILE = "+6281234567890"


def case(raw, kind, e164=None, extension=None, *, presentation=None, id):
    return pytest.param(raw, presentation, kind, e164, extension, id=id)


INDONESIAN_TRUNK = [
    # Real external numbers, in every shape trunks and people use.
    case("+6281234567890", NUMBER, MOBILE, id="e164"),
    case("+62 812-3456-7890", NUMBER, MOBILE, id="e164-with-spaces-and-dashes"),
    case("+62.812.3456.7890", NUMBER, MOBILE, id="e164-with-dots"),
    case("081234567890", NUMBER, MOBILE, id="national-trunk-prefix"),
    case("0812 3456 7890", NUMBER, MOBILE, id="national-with-spaces"),
    case("(021) 5550123", NUMBER, "+62215550123", id="jakarta-landline-7-digits"),
    case("(021) 5550-1234", NUMBER, "+622155501234", id="jakarta-landline-8-digits"),
    case("006281234567890", NUMBER, MOBILE, id="00-international-own-country"),
    case("00493012345678", NUMBER, "+493012345678", id="00-international-berlin"),
    case("6281234567890", NUMBER, MOBILE, id="e164-without-plus"),
    case("00878 1234 5678", NUMBER, "+6287812345678", id="outside-line-0-before-national"),
    case("0006281234567890", NUMBER, MOBILE, id="outside-line-0-before-00"),
    case("00215550123", NUMBER, "+62215550123", id="outside-line-0-before-landline"),
    case(
        "00852 1234 5678", NUMBER, "+6285212345678",
        id="outside-line-0-valid-beats-possible-hong-kong-reading",
    ),
    case(
        "00812 3456 7890", NUMBER, "+81234567890",
        id="ambiguous-valid-as-international-japan-so-00-reading-wins",
    ),
    case("sip:+6281234567890@trunk.example", NUMBER, MOBILE, id="sip-uri"),
    case("tel:+62-812-3456-7890", NUMBER, MOBILE, id="tel-uri"),
    case(' "+6281234567890" ', NUMBER, MOBILE, id="quoted-and-padded"),
    # Withheld numbers.
    case("anonymous", ANONYMOUS, id="anonymous"),
    case("Anonymous", ANONYMOUS, id="anonymous-capitalised"),
    case("unknown", ANONYMOUS, id="unknown-as-agi-shows-it"),
    case("<unknown>", ANONYMOUS, id="unknown-as-ami-shows-it"),
    case("Restricted", ANONYMOUS, id="restricted"),
    case("Private", ANONYMOUS, id="private"),
    case("WITHHELD", ANONYMOUS, id="withheld"),
    case(" 'unavailable' ", ANONYMOUS, id="unavailable-quoted"),
    case("sip:anonymous@anonymous.invalid", ANONYMOUS, id="rfc3323-anonymous-uri"),
    case("", ANONYMOUS, id="empty"),
    case("   ", ANONYMOUS, id="whitespace"),
    case(None, ANONYMOUS, id="none"),
    case(MOBILE, ANONYMOUS, presentation=35, id="presentation-restricted-hides-number"),
    case(MOBILE, ANONYMOUS, presentation=67, id="presentation-unavailable-hides-number"),
    case(MOBILE, ANONYMOUS, presentation="35", id="presentation-as-agi-text"),
    case("101", ANONYMOUS, presentation=32, id="presentation-restricted-wins-over-extension"),
    case(MOBILE, NUMBER, MOBILE, presentation=0, id="presentation-allowed"),
    case(MOBILE, NUMBER, MOBILE, presentation=1, id="presentation-allowed-screened"),
    # Our own extensions: only the plan decides.
    case("101", INTERNAL, extension="101", id="extension-101"),
    case("2500", INTERNAL, extension="2500", id="extension-2500"),
    case(" 1 99 ", INTERNAL, extension="199", id="extension-with-spaces"),
    case("sip:150@pbx.local", INTERNAL, extension="150", id="extension-in-sip-uri"),
    case("555", INVALID, id="short-outside-plan-is-too-short-for-phonenumbers"),
    case("0101", INVALID, id="0101-not-extension-and-too-short"),
    case("3000", INVALID, id="3000-outside-plan-and-too-short"),
    # Garbage is refused, never cleaned into digits.
    case("1" * 40, INVALID, id="40-digits"),
    case("+6281234567890123", INVALID, id="16-digits"),
    case("'; DROP TABLE deals;--", INVALID, id="sql-injection"),
    case("<script>alert(1)</script>", INVALID, id="html-script"),
    case("12ab34", INVALID, id="letters"),
    case("+62 812 3456 7890 ext 12", INVALID, id="extension-suffix-is-letters"),
    case("1" * 10240, INVALID, id="10kb-of-digits"),
    case("x" * 10240, INVALID, id="10kb-of-letters"),
    case("+62812\n34567890", INVALID, id="control-character-newline"),
    case("+62812\x0034567890", INVALID, id="control-character-nul"),
    case("\ufffd\ufffd\x81", INVALID, id="undecodable-bytes-in-str"),
    case("٠٨١٢٣٤٥٦٧٨٩٠", INVALID, id="arabic-indic-digits-refused"),
    case("++6281234567890", INVALID, id="double-plus"),
    case("---", INVALID, id="separators-only"),
    case("+0062", INVALID, id="no-country-code-after-plus"),
    case("sip:" + "1" * 100 + "@trunk.example", INVALID, id="sip-uri-user-part-too-long"),
]


@pytest.mark.parametrize("raw, presentation, kind, e164, extension", INDONESIAN_TRUNK)
def test_indonesian_trunk_caller_id(raw, presentation, kind, e164, extension):
    caller = classify_caller(raw, region="ID", extensions=JAKARTA_PLAN, presentation=presentation)

    assert (caller.kind, caller.e164, caller.extension) == (kind, e164, extension)
    assert caller.raw == ("" if raw is None else raw)
    if kind is INVALID:
        assert caller.reason
    else:
        assert caller.reason is None


def test_sip_uri_long_only_in_its_domain_is_still_read():
    raw = "sip:+6281234567890@" + "sbc." * 2500 + "example"

    caller = classify_caller(raw, region="ID", extensions=JAKARTA_PLAN)

    assert (caller.kind, caller.e164) == (NUMBER, MOBILE)


def test_invalid_callers_say_why():
    def reason(raw):
        return classify_caller(raw, region="ID", extensions=JAKARTA_PLAN).reason

    assert reason("'; DROP TABLE deals;--") == (
        "contains characters that are not part of a phone number"
    )
    assert reason("1" * 40) == "has more than 15 digits"
    assert reason("x" * 10240) == "too long to be a phone number"
    assert reason("555") == "too short to be a phone number"


@pytest.mark.parametrize(
    "raw, plan, kind, e164, extension",
    [
        pytest.param("030 12345678", NO_EXTENSIONS, NUMBER, "+493012345678", None,
                     id="berlin-national"),
        pytest.param("+49 30 12345678", NO_EXTENSIONS, NUMBER, "+493012345678", None,
                     id="berlin-e164"),
        pytest.param("0030 12345678", NO_EXTENSIONS, NUMBER, "+493012345678", None,
                     id="outside-line-0-greek-reading-not-valid"),
        pytest.param("101", NO_EXTENSIONS, INVALID, None, None,
                     id="101-never-silently-becomes-+49101"),
        pytest.param("101", ExtensionPlan.parse("100-199"), INTERNAL, None, "101",
                     id="101-in-plan-is-internal"),
    ],
)
def test_german_trunk_caller_id(raw, plan, kind, e164, extension):
    caller = classify_caller(raw, region="DE", extensions=plan)

    assert (caller.kind, caller.e164, caller.extension) == (kind, e164, extension)


@pytest.mark.parametrize(
    "raw, kind, e164",
    [
        pytest.param("(650) 253-0000", NUMBER, "+16502530000", id="national"),
        pytest.param("1 650 253 0000", NUMBER, "+16502530000", id="with-country-code-1"),
        pytest.param("011 49 30 12345678", NUMBER, "+493012345678", id="011-international"),
        pytest.param("911", INVALID, None, id="emergency-code-is-not-a-caller"),
    ],
)
def test_us_trunk_caller_id(raw, kind, e164):
    caller = classify_caller(raw, region="US", extensions=NO_EXTENSIONS)

    assert (caller.kind, caller.e164) == (kind, e164)


def test_classify_caller_returns_a_caller_number():
    assert classify_caller("101", region="ID", extensions=JAKARTA_PLAN) == CallerNumber(
        raw="101", kind=INTERNAL, extension="101"
    )


@pytest.mark.parametrize(
    "text, ranges",
    [
        ("100-199, 2000-2999, 555", (("100", "199"), ("2000", "2999"), ("555", "555"))),
        ("100 - 199", (("100", "199"),)),
        ("100-199,", (("100", "199"),)),
        ("", ()),
        ("  ", ()),
    ],
)
def test_extension_plan_parses(text, ranges):
    assert ExtensionPlan.parse(text).ranges == ranges


@pytest.mark.parametrize(
    "text, complaint",
    [
        ("abc", '"abc" is not an extension'),
        ("100-abc", '"100-abc" is not an extension'),
        ("+100", '"+100" is not an extension'),
        ("100-", '"100-" is not an extension'),
        ("200-100", "runs backwards"),
        ("10-2000", "mixes lengths"),
    ],
)
def test_extension_plan_refuses_bad_text(text, complaint):
    with pytest.raises(ValidationError) as refused:
        ExtensionPlan.parse(text)

    assert complaint in refused.value.message


def test_extension_plan_compares_only_equal_lengths():
    plan = ExtensionPlan.parse("100-199")

    assert plan.is_extension("150")
    assert not plan.is_extension("0101")
    assert not plan.is_extension("1500")
    assert not plan.is_extension("15")
    assert not plan.is_extension("")
    assert not NO_EXTENSIONS.is_extension("101")


@pytest.mark.parametrize(
    "raw, region, e164",
    [
        ("0812-3456-7890", "ID", MOBILE),
        ("+62 812 3456 7890", "ID", MOBILE),
        ("030 12345678", "DE", "+493012345678"),
        ("(202) 555-0123", "US", "+12025550123"),
    ],
)
def test_normalize_number_returns_e164(raw, region, e164):
    assert normalize_number(raw, region=region) == e164


def test_normalize_number_knows_no_extensions():
    with pytest.raises(ValidationError) as refused:
        normalize_number("101", region="ID")

    assert refused.value.message == '"101" is not a phone number: too short to be a phone number'
    assert refused.value.field == "phone"


@pytest.mark.parametrize(
    "raw, message",
    [
        ("anonymous", '"anonymous" is not a phone number'),
        ("", "an empty value is not a phone number"),
        ("  ", "an empty value is not a phone number"),
        ("12ab34", '"12ab34" is not a phone number: '
                   "contains characters that are not part of a phone number"),
        ("<b>0812</b>", '"<b>0812</b>" is not a phone number: '
                        "contains characters that are not part of a phone number"),
        ("9" * 50, f'"{"9" * 40}…" is not a phone number: has more than 15 digits'),
    ],
)
def test_normalize_number_refuses_with_clear_message(raw, message):
    with pytest.raises(ValidationError) as refused:
        normalize_number(raw, region="ID")

    assert refused.value.message == message
    assert refused.value.field == "phone"


@pytest.mark.parametrize(
    "e164, region, shown",
    [
        (MOBILE, "ID", "0812-3456-7890"),
        ("+622155501234", "ID", "(021) 55501234"),
        ("+493012345678", "ID", "+49 30 12345678"),
        ("+493012345678", "DE", "030 12345678"),
        (MOBILE, "DE", "+62 812-3456-7890"),
        ("+12025550123", "US", "(202) 555-0123"),
    ],
)
def test_format_number_national_at_home_international_abroad(e164, region, shown):
    assert format_number(e164, region=region) == shown


def test_format_number_refuses_what_is_not_e164():
    with pytest.raises(ValidationError) as refused:
        format_number("hello", region="ID")

    assert refused.value.message == '"hello" is not an E.164 number'
