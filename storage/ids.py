"""Ids of stored rows (events, rollouts, releases, incidents, outbox deliveries): time-ordered
UUIDs (version 7, RFC 9562) as text.

Version 7 starts with the creation time in milliseconds, so a new id sorts after the ids before
it: each index on an id column (deployments, rollouts, rollout members, the outbox) grows at
its right edge, where the events of one group commit share a page, instead of dirtying a
random page per event. Under 16 connections that cut the bytes written per ingest request by
~30% (65 -> 46 KiB) and its CPU by ~5% against random version-4 ids (benchmarks/README.md,
issue 16). The rest is random, so ids stay unguessable; they are the same text format.

uuid_utils makes them in Rust: the stdlib's uuid4() built its UUID object in Python and read
os.urandom (releasing the GIL), ~3% of an ingest request's instructions (callgrind), and
Python 3.11's uuid module has no version 7.
"""

from __future__ import annotations

import uuid_utils


def new_id() -> str:
    return str(uuid_utils.uuid7())
