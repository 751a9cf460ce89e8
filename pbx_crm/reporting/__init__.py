"""The funnel reports: stage by stage, seller by seller, week by week, and where it leaks.

``reports`` (the figures of a pipeline and a period, and the deals behind each), with
``figures`` (the period and the rows a report holds), ``scope`` (whose figures, and the SQL
every part shares) and ``from_days`` (the figures read from the daily tables); ``days`` (the
daily counts kept beside the stage history, on every move and call), ``days_rebuild`` (the
same counts recounted in bulk), ``local_days`` (a local day in SQL), ``charts`` (tables for the CLI and CSV, SVG
charts for the page), ``advisor`` (plain-language hints read off a report).

May import: the store, ``rules``, ``funnel`` and ``people``. Never the edges or the PBX
plumbing (``telephony``, ``web``, ``webui``, ``agi``, ``cli``).
"""
