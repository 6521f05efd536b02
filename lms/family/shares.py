"""Splitting a pool's miles by contribution, exactly."""

from __future__ import annotations

from collections.abc import Sequence


def proportional(total: int, weights: Sequence[int]) -> list[int]:
    """``total`` split in proportion to ``weights`` by largest remainder: the shares sum to
    ``total`` exactly; ties of remainder go to the earlier weight (callers list the head
    first). All-zero weights split equally."""
    if total < 0 or any(w < 0 for w in weights):
        raise ValueError("negative total or weight")
    if not weights:
        return []
    if sum(weights) == 0:
        weights = [1] * len(weights)
    whole = sum(weights)
    shares = [total * w // whole for w in weights]
    remainders = [total * w % whole for w in weights]
    left = total - sum(shares)
    for i in sorted(range(len(weights)), key=lambda i: (-remainders[i], i))[:left]:
        shares[i] += 1
    return shares


def leaver_share(available: int, contribution: int, contributions_total: int) -> int:
    """What a member takes on leaving: their contribution's share of what the pool has now,
    rounded down (the fraction stays with those who remain)."""
    if contributions_total <= 0 or available <= 0:
        return 0
    return available * contribution // contributions_total
