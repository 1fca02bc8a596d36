"""Ingest: the HTTP API CI/CD pipelines post deployments, builds and releases to."""
