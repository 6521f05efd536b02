"""Accrual: programme earn rules, promotions and flown-flight credits."""
