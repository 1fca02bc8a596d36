"""Hostile clients against `releasebits serve` over real sockets: slow senders, bad chunking.

Issue 17, items 1 and 2: what an outside review did to a running daemon, as it did it.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator

import pytest
import requests

from tests.conftest import Daemon

pytestmark = pytest.mark.e2e

SLOW_SOCKETS = 200


@pytest.fixture
def running(daemon: Daemon) -> Iterator[tuple[Daemon, str]]:
    daemon.start()
    created = daemon.cli("token", "create", "hostile")
    assert created.returncode == 0, created.stderr
    yield daemon, created.stdout.strip().splitlines()[-1]


def _raw(port: int, request: bytes, timeout: float = 10) -> bytes:
    """Send raw bytes, return the whole answer (the request asks for Connection: close)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        out = b""
        while chunk := sock.recv(65536):
            out += chunk
        return out


def _chunked_post(token: str, chunks: bytes, content_type: str) -> bytes:
    return (
        b"POST /components/chunky/deployments HTTP/1.1\r\nHost: localhost\r\n"
        b"Authorization: Bearer " + token.encode() + b"\r\n"
        b"Content-Type: " + content_type.encode() + b"\r\n"
        b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n" + chunks
    )


def _chunk(data: bytes, size: int = 1000) -> bytes:
    pieces = [data[i : i + size] for i in range(0, len(data), size)]
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"


def test_slow_header_clients_do_not_starve_a_normal_client(running: tuple[Daemon, str]) -> None:
    """200 sockets each dribbling one header line a second hold no request thread: a normal
    client's POST keeps answering, p99 under 100 ms (gunicorn gthread answered none)."""
    daemon, token = running
    stop = threading.Event()
    socks: list[socket.socket] = []
    for _ in range(SLOW_SOCKETS):
        sock = socket.create_connection(("127.0.0.1", daemon.port), timeout=5)
        sock.sendall(b"POST /components/slow/deployments HTTP/1.1\r\nHost: localhost\r\n")
        socks.append(sock)

    def dribble() -> None:
        n = 0
        while not stop.wait(1.0):
            n += 1
            for sock in socks:
                # The server may cut a slow client off; that is allowed.
                with contextlib.suppress(OSError):
                    sock.sendall(b"X-Slow-%d: %d\r\n" % (n, n))

    dribbler = threading.Thread(target=dribble)
    dribbler.start()
    latencies: list[float] = []
    session = requests.Session()
    try:
        for n in range(50):
            started = time.perf_counter()
            resp = session.post(
                f"{daemon.url}/components/normal/deployments",
                json={"version": f"1.0.{n}"},
                headers={"Authorization": f"Bearer {token}"},
                timeout=5,
            )
            latencies.append(time.perf_counter() - started)
            assert resp.status_code == 201
            time.sleep(0.1)  # a client posting every 0.1 s, while the slow sockets dribble
    finally:
        stop.set()
        dribbler.join()
        for sock in socks:
            sock.close()
    latencies.sort()
    p99 = latencies[int(len(latencies) * 0.99) - 1]
    assert p99 < 0.1, f"p99 {p99 * 1000:.0f} ms with {SLOW_SOCKETS} slow sockets open"


def test_slow_body_clients_do_not_stall_the_others(running: tuple[Daemon, str]) -> None:
    """100 sockets sent their headers and part of a body, then stopped: half on the ingest path
    (answered on the event loop), half on a form POST (the app's request threads). They hold
    neither the loop nor a thread: other clients' POSTs and GETs answer at once."""
    daemon, token = running
    socks: list[socket.socket] = []
    for n in range(100):
        ctype = b"application/json" if n % 2 else b"application/x-www-form-urlencoded"
        sock = socket.create_connection(("127.0.0.1", daemon.port), timeout=5)
        sock.sendall(
            b"POST /components/stalled/deployments HTTP/1.1\r\nHost: localhost\r\n"
            b"Authorization: Bearer " + token.encode() + b"\r\n"
            b"Content-Type: " + ctype + b"\r\nContent-Length: 400\r\n\r\n" + b'{"version"'
        )
        socks.append(sock)
    try:
        time.sleep(0.5)
        auth = {"Authorization": f"Bearer {token}"}
        for n in range(20):
            started = time.perf_counter()
            created = requests.post(
                f"{daemon.url}/components/normal/deployments",
                json={"version": f"2.0.{n}"},
                headers=auth,
                timeout=5,
            )
            form = requests.post(
                f"{daemon.url}/components/normal/builds",
                data={"version": f"2.0.{n}"},
                headers=auth,
                timeout=5,
            )
            listed = requests.get(f"{daemon.url}/components", headers=auth, timeout=5)
            took = time.perf_counter() - started
            assert (created.status_code, form.status_code, listed.status_code) == (201, 201, 200)
            assert took < 1.0, f"three requests took {took * 1000:.0f} ms"
    finally:
        for sock in socks:
            sock.close()
    names = [c["slug"] for c in listed.json()]
    assert "stalled" not in names  # nothing of a body never finished was stored


def test_chunked_body_over_max_body_bytes_is_413_not_truncated(
    running: tuple[Daemon, str],
) -> None:
    daemon, token = running
    body = b"version=1&stage=canary&filler=" + b"x" * 70_000 + b"&stage=production"
    answer = _raw(
        daemon.port, _chunked_post(token, _chunk(body), "application/x-www-form-urlencoded")
    )
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b'"code":"body_too_large"' in answer
    listed = requests.get(
        f"{daemon.url}/components/chunky/deployments",
        headers={"Authorization": f"Bearer {token}"},
        timeout=5,
    )
    assert listed.status_code == 404  # nothing of it was stored


def test_chunked_body_under_the_limit_is_read_whole(running: tuple[Daemon, str]) -> None:
    daemon, token = running
    body = b'{"version": "2.0", "stage": "staging", "meta_data": {"pad": "' + b"y" * 5000 + b'"}}'
    answer = _raw(daemon.port, _chunked_post(token, _chunk(body, 100), "application/json"))
    assert answer.startswith(b"HTTP/1.1 201"), answer[:300]
    listed = requests.get(
        f"{daemon.url}/components/chunky/deployments",
        headers={"Authorization": f"Bearer {token}"},
        timeout=5,
    ).json()
    assert [(d["version"], d["stage"]) for d in listed] == [("2.0", "staging")]


def test_malformed_chunk_size_is_400(running: tuple[Daemon, str]) -> None:
    daemon, token = running
    answer = _raw(
        daemon.port,
        _chunked_post(token, b"ZZ\r\nversion=1\r\n0\r\n\r\n", "application/x-www-form-urlencoded"),
    )
    assert answer.startswith(b"HTTP/1.1 400"), answer[:300]
    assert b'"code":"invalid_body"' in answer
    assert "Traceback" not in daemon.log()


def test_access_log_redacts_encoded_token_keys_and_cannot_be_forged(
    running: tuple[Daemon, str],
) -> None:
    """Item 3: `access%5Ftoken` is the same parameter to the server, so it is redacted too; a
    `%0A` in a path or a newline in a version cannot write a line of its own."""
    daemon, token = running
    forged = 'FORGED 127.0.0.1 "GET /admin" 200'
    body = json.dumps({"version": f"1.0\n{forged}"}).encode()
    answer = _raw(  # raw bytes: HTTP clients would normalise %5F to _
        daemon.port,
        f"POST /components/logs/deployments?access%5Ftoken={token} HTTP/1.1\r\n"
        f"Host: localhost\r\nContent-Type: application/json\r\nConnection: close\r\n"
        f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body,
    )
    assert answer.startswith(b"HTTP/1.1 201"), answer[:300]
    # A stored event's 201 is logged by its "stored" line (its access line is DEBUG); a refused
    # request's access line is INFO, with the query.
    refused = _raw(
        daemon.port,
        f"POST /components/logs/deployments?access%5Ftoken={token} HTTP/1.1\r\n"
        f"Host: localhost\r\nContent-Type: application/json\r\nConnection: close\r\n"
        f"Content-Length: 1\r\n\r\n{{".encode(),
    )
    assert refused.startswith(b"HTTP/1.1 400"), refused[:300]
    resp = requests.get(f"{daemon.url}/no/such%0A{forged.replace(' ', '%20')}", timeout=5)
    assert resp.status_code == 404
    deadline = time.time() + 5
    while "no/such" not in daemon.log() and time.time() < deadline:
        time.sleep(0.05)
    log = daemon.log()
    assert token not in log
    assert "access%5Ftoken=[redacted]" in log
    assert not [line for line in log.splitlines() if line.startswith("FORGED")]
    assert f"version=1.0\\n{forged}" in log
