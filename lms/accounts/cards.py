"""Card numbers: a programme prefix, a sequence number and a Luhn check digit."""

from __future__ import annotations


def luhn_digit(digits: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 0:  # doubled positions, counted from the digit left of the check digit
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return str((10 - total % 10) % 10)


def make_card_number(prefix: str, sequence: int) -> str:
    body = f"{prefix}{sequence:09d}"
    return body + luhn_digit(body)


def is_valid_card_number(card: str) -> bool:
    return card.isdigit() and 8 <= len(card) <= 16 and luhn_digit(card[:-1]) == card[-1]
