"""Forwarders: one small module per downstream target."""
