"""pbx-crm: a CRM module for an Asterisk IP-PBX, where a call is a deal event."""

__version__ = "0.1.0"
