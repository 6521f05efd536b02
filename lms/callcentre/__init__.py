"""The call centre: staff search and the 360° view of a member, balance adjustments with
limits and approval, reversals, locks, merges of duplicates, and the audit log of it all."""
