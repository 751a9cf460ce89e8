"""E-mail addresses: the one check of what counts as one, for contacts and for users.

Deliberately loose (one ``@``, something on both sides, no spaces): the mail server is the
judge of the rest, and a seller typing a customer's address must not be refused a real one.
"""

from __future__ import annotations

from ..errors import ValidationError

MAX_EMAIL = 254


def clean_email(email) -> str | None:
    """The address trimmed, None when empty; refused when it cannot be an address."""
    email = (email or "").strip()
    if len(email) > MAX_EMAIL:
        raise ValidationError("The email is longer than %(limit)s characters.", limit=MAX_EMAIL,
                              field="email")
    if email and (email.count("@") != 1 or " " in email or email.startswith("@")
                  or email.endswith("@")):
        raise ValidationError("“%(email)s” is not an e-mail address.", email=email[:60],
                              field="email")
    return email or None
