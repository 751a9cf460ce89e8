"""AGI hooks that the Asterisk dialplan calls, installed as ``pbx_crm.agi``."""
