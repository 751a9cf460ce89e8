"""The robots wing: stage robots, the passes that fire them, and the clock that runs them.

``passes`` (the rules, their passes and triggers, nudge answers), ``scheduler`` (APScheduler
runs the passes in the background).

May import the services (``deals``, ``pipelines``, ``events`` ...), ``db``, ``config``,
``models``, ``journal``, ``mailer`` and ``working_hours``.
"""
