"""Apple Wallet passes with the PassKit web service, Google Wallet save links, and the pushes
that keep both up to date when a member's balance or tier changes (issue 6, items 4 and 5)."""
