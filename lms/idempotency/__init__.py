"""Idempotency of mutating API calls (DESIGN §3)."""
