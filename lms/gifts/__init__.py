"""Gifting miles between members."""
