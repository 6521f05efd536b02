"""Family pools: a shared account that its members' redeemable miles accrue to."""
