"""Redemption: member consent codes, quotes, holds, captures, voids and refunds of mixed
cash-and-miles orders at partners, and members' own award bookings through the programme's
internal airline partner."""
