"""The ingest hot path in-process, without an HTTP server: one durable POST of a deployment
through the whole WSGI app (auth, validation, group commit, aggregates, outbox, 201).

  python benchmarks/profile_ingest.py                 # CPU us per request over --requests
  python benchmarks/profile_ingest.py --profile       # pyinstrument table of the hot path
  python benchmarks/profile_ingest.py --callgrind     # instructions per request (valgrind)

--callgrind runs this script twice under `valgrind --tool=callgrind` (with 1 request and with
1 + --requests requests) and divides the difference: a noise-free instruction count of one
request, which stays put however busy the machine is. Kernel work (the fsync) is not counted.
"""

from __future__ import annotations

import argparse
import io
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.ingest import DeploymentRequest
from exporter.app import create_app
from exporter.settings import Settings
from storage import tokens
from storage.db import open_db


def make_app(tmp: Path, synchronous: str = "full") -> tuple[Any, str]:
    settings = Settings(db=str(tmp / "profile.db"), sqlite_synchronous=synchronous)
    db = open_db(settings.db, migrate=True)
    token = tokens.create_token(db, "profile", ("write",))
    db.close()
    return create_app(settings, process_metrics=False), token


def environ(token: str, i: int) -> dict[str, Any]:
    """The WSGI environ of the request ingest.py's clients send (same body, same headers)."""
    method, path, body, headers = DeploymentRequest(token, 300)(i)
    return {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8080",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "CONTENT_TYPE": headers["Content-Type"],
        "CONTENT_LENGTH": str(len(body)),
        "HTTP_AUTHORIZATION": headers["Authorization"],
        "wsgi.input": io.BytesIO(body),
        "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr,
        "wsgi.version": (1, 0),
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
        "wsgi.input_terminated": True,
    }


def post(app: Any, token: str, i: int) -> None:
    status: list[str] = []
    body = b"".join(app(environ(token, i), lambda s, h, exc=None: status.append(s)))
    if not status or not status[0].startswith("201"):
        raise SystemExit(f"unexpected answer {status} {body[:200]!r}")


def run(requests: int, profile: bool, warmup: int) -> None:
    with tempfile.TemporaryDirectory(prefix="rb-profile-") as tmp:
        # The profile leaves the fsync out (synchronous=normal): it is kernel wait, not CPU, and
        # would otherwise fill the wall-clock profile.
        app, token = make_app(Path(tmp), "normal" if profile else "full")
        # Imports, connection, prepared statements; and `warmup` deployments first (800: every
        # one of the 300 components has two or more), so the measured ones take the steady
        # path (DORA: a rollout that follows another), not a component's first deployment.
        for i in range(warmup):
            post(app, token, i)
        if profile:
            from pyinstrument import Profiler

            profiler = Profiler(interval=0.0002)
            profiler.start()
        cpu0, wall0 = time.process_time(), time.perf_counter()
        for i in range(warmup, warmup + requests):
            post(app, token, i)
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        if profile:
            profiler.stop()
            print(profiler.output_text(unicode=False, color=False, show_all=False))
        if requests == 0:
            return
        print(
            f"{requests} requests: {cpu / requests * 1e6:.0f} us CPU, "
            f"{wall / requests * 1e6:.0f} us wall per request (fsync included in wall)"
        )


def callgrind(requests: int, warmup: int) -> None:
    counts = []
    for n in (0, requests):
        done = subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                "--callgrind-out-file=/dev/null",
                sys.executable,
                __file__,
                "--requests",
                str(n),
                "--warmup",
                str(warmup),
            ],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": "0"},
        )
        match = re.search(r"Collected : (\d+)", done.stderr)
        if match is None:
            raise SystemExit(done.stderr[-2000:])
        counts.append(int(match.group(1)))
    per = (counts[1] - counts[0]) / requests
    print(f"callgrind: {per:,.0f} instructions per request ({requests} requests)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=800, help="unmeasured requests first")
    parser.add_argument("--profile", action="store_true", help="pyinstrument table")
    parser.add_argument("--callgrind", action="store_true", help="instructions per request")
    args = parser.parse_args()
    if args.callgrind:
        callgrind(min(args.requests, 200), args.warmup)
    else:
        run(args.requests, args.profile, args.warmup)


if __name__ == "__main__":
    main()
