"""Payments at the external provider: creating a payment, verifying its signed webhooks and
handing each confirmed, failed or cancelled payment to the purchase it pays for."""
