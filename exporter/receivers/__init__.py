"""Webhook receivers: GitHub, GitLab and CDEvents payloads become the deployments, builds,
commits and incidents the ingest API records, through the same validation and write path."""
