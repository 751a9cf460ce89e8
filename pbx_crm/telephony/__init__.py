"""The telephony wing: everything between Asterisk and the services.

AGI: ``agi_protocol`` (the wire), ``fastagi`` (the server Asterisk connects to),
``dispatcher`` (runs a hook of ``pbx_crm.agi`` under its time budget, spools what the database
could not take), ``spool`` (the durable local queue), ``health`` (the server's own check).
AMI: ``ami_protocol`` (the wire), ``ami_client`` (one connection, actions and events),
``call_tracker`` (events into calls as they ring), ``ami_listener`` (screen-pops and call
outcomes), ``click_to_call``.

May import the services (``calls``, ``contacts``, ``deals`` ...), ``db``, ``config`` and
``models``. The services never import this wing: a call's facts reach them as plain
arguments.
"""
