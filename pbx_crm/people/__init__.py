"""Who uses the CRM: users, how they sign in, and what they are told.

``users`` (roles, phone extensions, passwords), ``sign_in`` (signed-in browsers and the brake
on password guessing), ``notifications`` (robot nudges and assignments), ``mailer`` (outgoing
e-mail over SMTP), ``language`` (the catalogs, and the words kept with a stored text so that
its reader reads it in their language).

May import: the store, ``rules``, and ``funnel.journal`` (a change to a user is audited like
any other). Never the edges or the PBX plumbing (``telephony``, ``web``, ``webui``, ``agi``,
``cli``).
"""
