"""``lms demo generate``: a realistic population with years of ledger history, bulk-loaded."""
