"""CRM module on top of the loyalty core."""
