"""The sales funnel's services: deals on the board, and what happens to them.

``deals`` (create, move, take, assign, close, reopen), ``new_deal`` (the "New deal" form),
``deal_card`` (what a card shows), ``contacts`` (and a contact's page, edits and merges:
``contact_card``, ``contact_edit``, ``contact_merge``), ``pipelines`` (stages, the board's
columns),
``tasks``, ``board`` and ``stage_totals`` (the Kanban board's queries and kept totals),
``calls`` (a call as a deal event: who calls, who answered, how it ended), ``events`` (the
outbox of screen-pops the web delivers), ``journal`` (the audit log and the deal's timeline).
Plain functions over a session that never commit: the edges (web routes, AGI hooks, the CLI,
the robots' scheduler) open and close the transactions.

May import: the store (``config``, ``db``, ``models``, ``enums``, ``errors``), ``rules``,
``people``, and ``reporting.days`` (the daily counts kept on every move and call). Never the
edges or the PBX plumbing (``telephony``, ``web``, ``webui``, ``agi``, ``cli``).
"""
