"""ReleaseBits storage: SQLite via sqlite-utils. Never imports exporter."""
