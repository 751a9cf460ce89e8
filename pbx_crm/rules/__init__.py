"""Pure rules: decided from their arguments alone, with no database in sight.

``phones`` (recognising and normalising caller numbers), ``addresses`` (what an e-mail
address is), ``money`` (amounts in minor units, read and shown in a locale),
``working_hours`` (the company's working clock), ``funnel`` (who may see and change a deal,
and which moves are legal), ``deal_titles`` (the title the PBX gives a caller's deal).

May import: ``pbx_crm.enums`` and ``pbx_crm.errors``, nothing else of pbx-crm (no store, no
services, no edges), so every wing can use them and a test can check them with plain values.
"""
