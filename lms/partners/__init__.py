"""Partners: contracts, earn rates, API keys with scopes and rate limits, partner accruals."""
