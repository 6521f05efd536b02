"""Settlement: monthly partner statements computed from the clearing accounts, closed into
insert-only snapshots, and checked against the ledger by ``lms ledger verify``."""
