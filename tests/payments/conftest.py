"""The real fake provider and a real API server (see tests/payments/support.py)."""

from tests.payments.support import api, live_api, live_settings, provider, purchase_rules

__all__ = ["api", "live_api", "live_settings", "provider", "purchase_rules"]
