"""The ``pbx-crm`` command: the admin's command line, an edge like the web routes and the AGI
hooks.

``main`` (the parser, the global options, and ``main(argv)``, the console entry point) holds
every command for now.

May import: every wing (the store, ``rules``, the services, ``telephony``, ``web``, ``sample``,
``simulator``). Nothing imports the CLI.
"""
