"""Forwarding targets: one module per upstream, one interface (base.Target)."""
