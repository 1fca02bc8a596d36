"""/metrics: the collector over pre-aggregated rows, its metric families, and the scrape route."""
