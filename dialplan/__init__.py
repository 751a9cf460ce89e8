"""Asterisk dialplan files that telecom admins include, installed as ``pbx_crm.dialplan``."""
