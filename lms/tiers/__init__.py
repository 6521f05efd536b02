"""Tiers (status from qualifying units), programme policies and lot expiry."""
