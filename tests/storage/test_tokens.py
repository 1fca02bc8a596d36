"""tokens.VerifiedTokens: what the write path remembers of verified tokens, and what it does
not (the API side is in tests/exporter/ingest/test_api.py::test_revoked_token_is_401)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from storage import tokens
from storage.db import open_db


@pytest.mark.sqlite_only("two database files; the PostgreSQL pass has one database")
def test_a_token_verified_on_one_database_is_unknown_to_another(tmp_path: Path) -> None:
    first = open_db(tmp_path / "first.db", migrate=True)
    second = open_db(tmp_path / "second.db", migrate=True)
    token = tokens.create_token(first, "ci", ("write",))
    verified = tokens.VerifiedTokens()
    found = verified.authenticate(first, token)
    assert found is not None and found.name == "ci"
    assert verified.authenticate(second, token) is None
    assert verified.authenticate(first, token + "x") is None


def test_remembered_tokens_expire(db: Any) -> None:
    token = tokens.create_token(db, "ci", ("write",))
    remembering = tokens.VerifiedTokens(ttl=3600)
    forgetting = tokens.VerifiedTokens(ttl=0)
    assert remembering.authenticate(db, token) is not None
    assert forgetting.authenticate(db, token) is not None
    assert tokens.revoke_token(db, "ci")
    assert forgetting.authenticate(db, token) is None  # read again: revoked
    assert remembering.authenticate(db, token) is not None  # the write's transaction re-checks
    assert db.one(tokens.LIVE, [remembering.authenticate(db, token).id]) is None  # type: ignore[union-attr]
    remembering.forget(db, "not-that-one")
    assert remembering.authenticate(db, token) is not None
    remembering.forget(db, token.split("_")[1])
    assert remembering.authenticate(db, token) is None


def test_at_most_size_tokens_are_remembered(db: Any) -> None:
    made = [tokens.create_token(db, f"ci{n}", ("write",)) for n in range(3)]
    verified = tokens.VerifiedTokens(size=2)
    for token in made:
        assert verified.authenticate(db, token) is not None
    for n in range(3):
        assert tokens.revoke_token(db, f"ci{n}")
    assert verified.authenticate(db, made[0]) is None  # the oldest was dropped: read again
    assert verified.authenticate(db, made[2]) is not None
