"""Members, their accounts, balances and statements."""
