"""Schema migrations and readable schema dumps, installed as ``pbx_crm.sql``."""
