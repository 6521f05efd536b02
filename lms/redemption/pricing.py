"""Arithmetic of mixed cash-and-miles orders, in integers only.

Values per mile are thousandths of a minor unit ("milli-minor", see lms.partners.models);
shares are basis points. Rounding always favours the rule being respected:

- a number of miles is worth ``miles * value // 1000`` minor units (rounded down), so the
  cash left, ``order - worth``, is rounded up: the member never pays less than the order;
- the most miles an order may take is rounded down, so the cash left is never below the
  contract's minimum cash share.
"""

from __future__ import annotations

from dataclasses import dataclass

BP = 10_000
MILLI = 1_000


def miles_worth(miles: int, value_per_mile_milli_minor: int) -> int:
    """What ``miles`` pay for, in minor units, rounded down."""
    return miles * value_per_mile_milli_minor // MILLI


def max_miles_for(order_amount: int, value_per_mile_milli_minor: int,
                  min_cash_share_bp: int) -> int:
    """The most miles an order may take: their worth stays within the share of the order
    that may be paid in miles, ``(10000 - min cash share) / 10000``."""
    return (order_amount * (BP - min_cash_share_bp) * MILLI
            // (BP * value_per_mile_milli_minor))


@dataclass(frozen=True, slots=True)
class QuoteFigures:
    min_miles: int
    max_miles: int
    cash_at_min: int
    cash_at_max: int


def quote(order_amount: int, available: int, value_per_mile_milli_minor: int,
          min_cash_share_bp: int) -> QuoteFigures:
    """The range of miles an order may take, bounded by the member's available miles, and
    the cash left at each end. A hold needs at least one mile, so the minimum is 1 when the
    order can take miles at all and both ends are 0 when it cannot."""
    most = min(available, max_miles_for(order_amount, value_per_mile_milli_minor,
                                        min_cash_share_bp))
    least = 1 if most >= 1 else 0
    return QuoteFigures(
        min_miles=least, max_miles=most,
        cash_at_min=order_amount - miles_worth(least, value_per_mile_milli_minor),
        cash_at_max=order_amount - miles_worth(most, value_per_mile_milli_minor))


def within_cash_share(miles: int, cash_amount: int, value_per_mile_milli_minor: int,
                      min_cash_share_bp: int) -> bool:
    """Whether a hold of ``miles`` plus ``cash_amount`` respects the minimum cash share of
    the order they make up (the order being the cash plus the miles' worth). A hold's check
    is this rule in SQL (partner_hold_open(), migration 0025); tests hold the two together."""
    order = cash_amount + miles_worth(miles, value_per_mile_milli_minor)
    return miles <= max_miles_for(order, value_per_mile_milli_minor, min_cash_share_bp)
