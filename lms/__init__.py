"""Loyalty programme management system: the loyalty core."""
