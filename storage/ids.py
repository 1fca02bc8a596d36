"""Ids of stored rows (events, rollouts, releases, incidents, outbox deliveries): random UUIDs
(version 4) as text.

uuid_utils makes them in Rust: the stdlib's uuid4() builds a UUID object in Python and reads
os.urandom (releasing the GIL), ~3% of an ingest request's instructions (callgrind,
benchmarks/README.md, issue 16); the text is the same format.
"""

from __future__ import annotations

import uuid_utils


def new_id() -> str:
    return str(uuid_utils.uuid4())
