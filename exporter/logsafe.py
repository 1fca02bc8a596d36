"""Log lines that cannot be forged: control characters in logged values are escaped.

A client controls much of what the daemon logs (paths, query strings, versions, upstream error
texts). A `%0A` in a path or a newline in a `version` used to write a second, genuine-looking
log line. `EscapeControl` sits on every handler and escapes C0/C1 control characters (and DEL)
in the arguments of each record, so the message templates keep their own layout.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from typing import Any

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def escape_control(text: str) -> str:
    """`text` with each control character written as a visible escape (\\n, \\x1b, \\u2028)."""
    return _CONTROL.sub(_escape_one, text)


def _escape_one(match: re.Match[str]) -> str:
    char = match.group()
    named = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
    if char in named:
        return named[char]
    return f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}"


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        return escape_control(value)
    if isinstance(value, bytes):
        return escape_control(value.decode("utf-8", "backslashreplace"))
    return value


class EscapeControl(logging.Filter):
    """A handler filter: escapes control characters in every string argument of a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(_clean(a) for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {k: _clean(v) for k, v in record.args.items()}
        elif record.args is None and isinstance(record.msg, str):
            record.msg = escape_control(record.msg)
        return True


def lean_records() -> None:
    """Records without what ReleaseBits' log format never prints: the caller's file and line
    (a stack walk per record), thread and multiprocessing names. The logging HOWTO's
    "Optimization" section names these switches; on the ingest path they were ~2% of the
    Python time of a request (benchmarks/README.md, issue 16)."""
    logging._srcfile = None  # the documented switch, private name and all
    logging.logThreads = False
    logging.logMultiprocessing = False


def install(handlers: list[logging.Handler]) -> None:
    for handler in handlers:
        if not any(isinstance(f, EscapeControl) for f in handler.filters):
            handler.addFilter(EscapeControl())


class Throttle:
    """At most one log line per `interval` seconds for a recurring condition; says how many
    were held back (a flood of new components past max_components logged one line each)."""

    def __init__(self, interval: float, clock: Callable[[], float] = time.monotonic):
        self.interval = interval
        self.clock = clock
        self._last: float | None = None
        self._held = 0
        self._lock = threading.Lock()

    def allow(self) -> int | None:
        """None when this occurrence is held back; else how many were since the last line."""
        with self._lock:
            now = self.clock()
            if self._last is not None and now - self._last < self.interval:
                self._held += 1
                return None
            held, self._held, self._last = self._held, 0, now
            return held
