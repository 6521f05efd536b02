"""The real fake payment provider and a real API server, for the purchase endpoints that a
locked member is refused (see tests/payments/support.py)."""

from tests.payments.support import api, live_api, live_settings, provider, purchase_rules

__all__ = ["api", "live_api", "live_settings", "provider", "purchase_rules"]
