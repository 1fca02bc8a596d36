"""API tokens: only a SHA-256 of each token is stored; lookups compare in constant time."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
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
