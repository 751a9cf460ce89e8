"""A fake Asterisk, shipped with pbx-crm: the demo plays calls through it and the tests use it.

``pbx_crm.simulator.agi`` plays Asterisk's side of AGI and FastAGI sessions, byte for byte as
the recorded Asterisk 22.10.1 transcripts show them; ``pbx_crm.simulator.ami`` is a loopback
AMI server that replays recorded event streams and synthesizes PJSIP calls;
``queue_calls`` and ``transfer_calls`` write queue calls, transfers, two-device sellers and
click-to-call as captures 10-16 show them (pieces in ``call_writer``); ``hagi`` reaches
several FastAGI servers as ``hagi://`` with SRV records does. Nothing here is
imported at package import time; import the submodule you need.

May import: the wire protocols of ``telephony`` (it speaks Asterisk's side of them),
nothing of the store or the services.
"""
