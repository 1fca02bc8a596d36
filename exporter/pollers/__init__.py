"""Release-health pollers: fetch / parse / store, one module per source."""
