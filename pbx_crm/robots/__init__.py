"""The robots wing: stage robots, the passes that fire them, and the clock that runs them.

``rules`` (the conditions and actions a rule may use, their validation, the rule services,
the runs a head reads), ``nudges`` (a seller answers a robot's reminder), ``passes`` (the
timed pass: due deals, claimed runs, firing, the mails and calls after the commit),
``actions`` (what a run does, one function per action), ``triggers`` (call events from the
outbox and freshly entered stages), ``scheduler`` (APScheduler runs the passes).

May import the services (``deals``, ``pipelines``, ``events`` ...), ``db``, ``config``,
``models``, ``journal``, ``mailer`` and ``working_hours``. Only ``scheduler``, the wing's
edge, imports ``pbx_crm.telephony``: it hands the passes a reminder call as a plain
callable. The CLI, the web routes and the demo use ``rules``, ``nudges`` and ``passes``; the
wing's modules import no private name from one another.
"""
