"""Forwarding: route events to targets at ingest, deliver the outbox, show deliveries."""
