"""A revocation from the CLI (another process) refuses the token on the very next request,
in every web worker and over kept-alive connections, although each worker remembers the write
tokens it verified (tokens.VerifiedTokens): each write checks its token in its own transaction."""

from __future__ import annotations

import pytest
import requests

from tests.conftest import Daemon

pytestmark = pytest.mark.e2e


def test_revoking_from_the_cli_refuses_a_cached_token_at_once(daemon: Daemon) -> None:
    daemon.extra_env["RELEASEBITS_WORKERS"] = "2"  # the SQLite default is one
    daemon.start()
    created = daemon.cli("token", "create", "ci")
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip().splitlines()[-1]
    session = requests.Session()
    headers = {"Authorization": f"Bearer {token}"}
    for n in range(20):  # both web workers verify it
        resp = session.post(
            f"{daemon.url}/components/c/deployments", json={"version": f"1.{n}"}, headers=headers
        )
        assert resp.status_code == 201
    revoked = daemon.cli("token", "revoke", "ci")
    assert revoked.returncode == 0, revoked.stderr
    for _ in range(10):  # whichever worker answers, and over new connections too
        resp = requests.post(
            f"{daemon.url}/components/c/deployments", json={"version": "2"}, headers=headers
        )
        assert resp.status_code == 401
        assert resp.json()["error"]["code"] == "invalid_token"
