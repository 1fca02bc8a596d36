"""Leases: one holder at a time, renewed by its owner, taken over only after expiry."""

from __future__ import annotations

from storage import leases
from storage.db import Store


def test_one_holder_renewal_takeover_and_release(db: Store) -> None:
    assert leases.acquire(db, "worker", "a", now=100.0, ttl=30)
    assert not leases.acquire(db, "worker", "b", now=110.0, ttl=30)  # a holds it until 130
    assert leases.acquire(db, "worker", "a", now=120.0, ttl=30)  # renewal: until 150
    held = leases.holder(db, "worker")
    assert held is not None
    assert (held.owner, held.acquired_at, held.renewed_at, held.expires_at) == (
        "a",
        100.0,
        120.0,
        150.0,
    )
    assert not leases.acquire(db, "worker", "b", now=149.0, ttl=30)
    assert leases.acquire(db, "worker", "b", now=150.0, ttl=30)  # expired: b takes over
    held = leases.holder(db, "worker")
    assert held is not None and (held.owner, held.acquired_at) == ("b", 150.0)
    assert not leases.acquire(db, "worker", "a", now=151.0, ttl=30)  # a lost it
    assert not leases.release(db, "worker", "a")  # not a's to give up
    assert leases.release(db, "worker", "b")
    assert leases.holder(db, "worker") is None
    assert leases.acquire(db, "worker", "a", now=152.0, ttl=30)  # free again at once


def test_names_are_independent(db: Store) -> None:
    assert leases.acquire(db, "worker", "a", now=0.0, ttl=10)
    assert leases.acquire(db, "other", "b", now=0.0, ttl=10)
    assert leases.holder(db, "nothing") is None
