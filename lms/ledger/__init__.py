"""The double-entry miles ledger: accounts, journal, balances, holds and lots."""
