"""API tokens: only a SHA-256 of each token is stored; lookups compare in constant time."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

from storage.db import Store

PREFIX = "rb_"
SCOPES = ("read", "write")


@dataclass(frozen=True)
class Token:
    """A token's public record (never the secret)."""

    id: str
    name: str
    scopes: tuple[str, ...]
    created_at: float
    revoked_at: float | None


class TokenExists(Exception):
    """A token with that name already exists."""


def _hash(token: str) -> str:
    # Tokens carry 256 random bits, so a fast hash is enough: there is nothing to brute-force.
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def create_token(db: Store, name: str, scopes: tuple[str, ...]) -> str:
    """Create a token and return it; this is the only time the secret exists in clear."""
    token_id = secrets.token_hex(6)
    token = f"{PREFIX}{token_id}_{secrets.token_urlsafe(32)}"
    with db.transaction():
        # One statement: two `token create` runs racing on one name (on a shared PostgreSQL
        # database) end with one token and one TokenExists, never a constraint error.
        created = db.one(
            "INSERT INTO tokens (id, name, secret_hash, scopes, created_at) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT(name) DO NOTHING RETURNING id",
            [token_id, name, _hash(token), " ".join(sorted(set(scopes))), time.time()],
        )
    if created is None:
        raise TokenExists(name)
    return token


def authenticate(db: Store, token: str) -> Token | None:
    """Return the live token matching `token`, or None (unknown, malformed or revoked)."""
    if not token.startswith(PREFIX) or len(token) > 200:
        return None
    token_id = token[len(PREFIX) :].split("_", 1)[0]
    row = db.execute(
        "SELECT id, name, secret_hash, scopes, created_at, revoked_at FROM tokens WHERE id = ?",
        [token_id],
    ).fetchone()
    if row is None:
        # Still hash and compare so unknown ids cost the same as known ones.
        hmac.compare_digest(_hash(token), _hash(""))
        return None
    if not hmac.compare_digest(_hash(token), row[2]) or row[5] is not None:
        return None
    return Token(row[0], row[1], tuple(row[3].split()), row[4], row[5])


# 1 when the token (one parameter: its id) exists and is not revoked, as the transaction asking
# sees it; a scalar subquery, so a write asks it in the same statement as its other lookups
# (storage/events.py).
LIVE = "SELECT 1 FROM tokens WHERE id = ? AND revoked_at IS NULL"


class VerifiedTokens:
    """Tokens this process verified recently, for the write path only.

    Authenticating a POST was a read transaction of its own on the request thread's connection,
    whose page cache every other connection's commit had just emptied: about 12% of the server
    CPU of an ingest request under load (benchmarks/README.md, issue 16). A write whose token is
    here skips it, and its own write transaction checks `LIVE` instead (events.record_event
    takes the token id), so a revocation from any process refuses the very next write. Kept
    per database location and by the secret's SHA-256, never the secret; entries live `ttl`
    seconds and at most `size` are kept. Only tokens the database accepted get in.
    """

    def __init__(self, ttl: float = 60.0, size: int = 256):
        self.ttl = ttl
        self.size = size
        self._entries: OrderedDict[tuple[str, str], tuple[Token, float]] = OrderedDict()
        self._lock = threading.Lock()

    def authenticate(self, db: Store, token: str) -> Token | None:
        """The token `authenticate` would answer, from memory when it was verified lately."""
        key = (db.location, _hash(token))
        hit = self._entries.get(key)
        if hit is not None and time.monotonic() < hit[1]:
            return hit[0]
        found = authenticate(db, token)
        with self._lock:
            if found is None:
                self._entries.pop(key, None)
            else:
                self._entries[key] = (found, time.monotonic() + self.ttl)
                self._entries.move_to_end(key)
                while len(self._entries) > self.size:
                    self._entries.popitem(last=False)
        return found

    def forget(self, db: Store, token_id: str) -> None:
        """Drop a token found revoked, so its next request is refused before its body is read."""
        with self._lock:
            for key, (token, _) in list(self._entries.items()):
                if key[0] == db.location and token.id == token_id:
                    del self._entries[key]


def list_tokens(db: Store) -> list[Token]:
    rows = db.execute(
        "SELECT id, name, scopes, created_at, revoked_at FROM tokens ORDER BY created_at"
    ).fetchall()
    return [Token(r[0], r[1], tuple(r[2].split()), r[3], r[4]) for r in rows]


def revoke_token(db: Store, name: str) -> bool:
    """Revoke by name; False if no live token has that name."""
    with db.transaction():
        cursor = db.execute(
            "UPDATE tokens SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL",
            [time.time(), name],
        )
    return cursor.rowcount > 0


def count_live(db: Store) -> int:
    return int(db.execute("SELECT count(*) FROM tokens WHERE revoked_at IS NULL").fetchone()[0])
