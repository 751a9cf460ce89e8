"""``python -m pbx_crm``: the same as the ``pbx-crm`` command."""

from .cli.main import main

raise SystemExit(main())
