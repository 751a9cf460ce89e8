"""The web UI (Bottle + Jinja2), installed as ``pbx_crm.webui``."""
