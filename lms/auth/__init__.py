"""Authentication of members and staff: passwords, tokens, throttling, guards."""
