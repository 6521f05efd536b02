"""Domain events: written in the transaction that caused them, relayed after commit."""
