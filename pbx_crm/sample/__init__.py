"""Sample data, made through the services: a demo team, and data at scale for benchmarks.

``demo`` (a believable sales team in Indonesia, its board, and calls played into it), ``seed``
(many contacts and deals, written fast and consistent, for the benchmarks).

May import: the store, ``rules`` and every service wing. Never the edges (``web``, ``webui``,
``agi``, ``cli``) or ``telephony``.
"""
