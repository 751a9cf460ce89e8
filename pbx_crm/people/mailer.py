"""Outgoing e-mail over SMTP, for robot nudges: one message per call, stdlib ``smtplib``.

The robots call ``send_mail`` after their transaction has committed (a mail cannot be rolled
back), with the settings' ``smtp_*`` values. With an empty ``smtp_host`` nothing is sent and
``mail_enabled`` says so. A refusal or an unreachable server raises ``MailFailed`` with a
message a head can read in the list of robot runs.
"""

from __future__ import annotations

import smtplib
from email.message import EmailMessage
from email.utils import formataddr, make_msgid

from ..config import Settings
from ..errors import CrmError

SMTP_TIMEOUT = 10.0


class MailFailed(CrmError):
    """The SMTP server could not be reached or refused the message."""

    status = 502


def mail_enabled(settings: Settings) -> bool:
    return bool(settings.smtp_host)


def send_mail(settings: Settings, *, to: str, to_name: str | None, subject: str,
              body: str) -> str:
    """Send one plain-text message; returns its Message-ID."""
    message = EmailMessage()
    message["From"] = settings.smtp_from
    message["To"] = formataddr((to_name or "", to))
    # Header values must not carry line breaks (they would start new headers).
    message["Subject"] = " ".join(subject.split())
    domain = settings.smtp_from.rpartition("@")[2] or "localhost"
    message["Message-ID"] = make_msgid(domain=domain)
    message.set_content(body)
    try:
        with smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=SMTP_TIMEOUT) as smtp:
            if settings.smtp_starttls:
                smtp.starttls()
            if settings.smtp_username:
                smtp.login(settings.smtp_username, settings.smtp_password)
            smtp.send_message(message)
    except (TimeoutError, smtplib.SMTPException, OSError) as error:
        raise MailFailed("e-mail to %(to)s via %(host)s:%(port)s failed: %(error)s", to=to,
                         host=settings.smtp_host, port=settings.smtp_port, error=error) \
            from error
    return message["Message-ID"]
