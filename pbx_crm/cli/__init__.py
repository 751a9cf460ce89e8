"""The ``pbx-crm`` command: the admin's command line, an edge like the web routes and the AGI
hooks. Each command parses its arguments, calls one service and shapes its output.

``main`` (the global options, ``build_parser`` assembling the groups, and ``main(argv)``, the
console entry point), ``common`` (what every group shares: declaring a command, the admin
actor, the engine, the password prompt, the text table). One module per command group, each
with its handlers and the function that adds its commands to the parser: ``database`` (``db``,
``version``), ``people`` (``user``), ``funnel`` (``pipeline``, ``stage``, ``contacts import``
and its CSV phone-book reader, ``board``), ``reports`` (``report``), ``robots`` (``robot``,
``robots``), ``telephony`` (``fastagi``, ``ami``, ``call``, ``check``, ``dialplan``,
``relay-path``), ``running`` (the long-running components: ``serve``, ``web``), ``sample``
(``demo``, ``simulate``, ``seed``).

May import: every wing (the store, ``rules``, the services, ``telephony``, ``web``, ``sample``,
``simulator``). Nothing imports the CLI.
"""
