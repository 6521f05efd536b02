"""Buying miles and buying status: price rules, pending purchases paid at the provider, and
what a confirmed payment grants."""
