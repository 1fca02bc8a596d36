"""Outbox delivery: the worker's loop over the rows ingest wrote (see routing.py).

The background worker calls `Deliverer.dispatch` every second: each target has its own loop on
its own thread and connection (claim its due rows under a lease, send them in event order,
record the outcomes in one transaction), so a slow or hanging target delays only itself. Retries use exponential backoff with jitter,
honour Retry-After, and end after `forward_give_up_hours` in the visible `failed` state.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

import requests

from exporter.errors import ForwardError
from exporter.forwarding.targets.base import EndpointGone, Event, Target
from exporter.http import make_session
from exporter.settings import Settings
from storage import events as events_store
from storage import outbox
from storage import releases as releases_store
from storage.db import Store, thread_store

log = logging.getLogger(__name__)

BATCH = 20  # per target and round; a failing target stops at its first failure
RUN_BUDGET_SECONDS = 10.0  # one job run keeps delivering while work is due, up to this long
MIN_RETRY_AFTER = 1.0  # a "Retry-After: 0" must not turn into a busy loop against a down target


def load_event(db: Store, d: outbox.Delivery) -> Event | None:
    if d.event_kind == "release":
        data = releases_store.get_release(db, d.event_id)
    else:
        data = events_store.get_event(db, d.event_kind, d.component or "", d.event_id)
    if data is None:
        return None
    return Event(d.event_kind, d.event_id, d.component, data, d.created_at)


class Deliverer:
    """Delivers due outbox rows for the configured targets; one per worker process."""

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Callable[[], float] = time.time,
        rand: Callable[[], float] = random.random,
        may_send: Callable[[], bool] = lambda: True,
    ):
        self.settings = settings
        # False once the worker may have lost its lease (Worker.may_act): no new attempt starts,
        # the rest of a claimed batch is left for the worker that takes over.
        self.may_send = may_send
        self.targets: dict[str, Target] = {
            t.name: t for t in settings.forward_targets if isinstance(t, Target)
        }
        self.clock = clock
        self.rand = rand
        self.blocked_until: dict[str, float] = {}  # a target backing off after a failure
        self.failing: set[str] = set()  # for one log line per outage, not one per attempt
        self._sessions: dict[str, requests.Session] = {}
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(
            max_workers=max(1, len(self.targets)), thread_name_prefix="forward"
        )
        self._loops: dict[str, Future[int]] = {}
        longest = max((t.timeout for t in self.targets.values()), default=15.0)
        # A claimed batch must be finished or released before its lease ends; 2 requests
        # (Sentry) per delivery at most.
        self.lease_seconds = BATCH * 2 * (longest + 5.0) + 30.0
        self.started = False

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        for session in self._sessions.values():
            session.close()

    def session(self, name: str) -> requests.Session:
        with self._lock:
            session = self._sessions.get(name)
            if session is None:
                # POSTs are never retried by the session; the outbox retries.
                session = self._sessions[name] = make_session(retries=0)
            return session

    def backoff(self, attempt: int) -> float:
        """Delay after the attempt-th failure: base * 2^(attempt-1), capped, half of it jittered."""
        s = self.settings
        delay = min(
            s.forward_retry_base_seconds * 2 ** max(attempt - 1, 0), s.forward_retry_max_seconds
        )
        return delay / 2 + self.rand() * delay / 2

    def _start(self, db: Store) -> None:
        if not self.started:
            released = outbox.release_orphans(db)
            if released:
                log.info(
                    "%d deliveries were in flight when the worker stopped; due again", released
                )
            self.started = True

    def dispatch(self, db: Store, budget: float = RUN_BUDGET_SECONDS) -> None:
        """Start a delivery loop for every target that has none running, and return at once.

        Each target runs on its own thread with its own connection: a target that hangs (it
        accepts TCP and never answers) delays only its own deliveries, never another target's,
        which is what the background worker calls every second.
        """
        self._start(db)
        with self._lock:
            for name in self.targets:
                running = self._loops.get(name)
                if running is None or running.done():
                    self._loops[name] = self._pool.submit(
                        self._target_loop, name, db.location, budget
                    )

    def run(self, db: Store, budget: float = RUN_BUDGET_SECONDS) -> int:
        """Deliver until nothing is due (or the budget is spent) and wait for every target;
        returns deliveries attempted (tests and the CLI; the worker uses dispatch)."""
        self._start(db)
        futures = [
            self._pool.submit(self._target_loop, name, db.location, budget) for name in self.targets
        ]
        return sum(f.result() for f in futures)

    def _target_loop(self, name: str, location: str, budget: float) -> int:
        s = self.settings
        db = thread_store(location, synchronous=s.sqlite_synchronous, pool_size=s.db_pool_size)
        deadline = time.monotonic() + budget
        total = 0
        while True:
            done = self._round(db, name)
            total += done
            if done == 0 or time.monotonic() >= deadline:
                return total

    def _round(self, db: Store, name: str) -> int:
        """Claim one batch of `name`'s due rows, send them in order, record the outcomes."""
        now = self.clock()
        if self.blocked_until.get(name, 0.0) > now:
            return 0
        claimed = outbox.claim(db, [name], now=now, lease_seconds=self.lease_seconds, limit=BATCH)
        if not claimed:
            return 0
        items = [(d, load_event(db, d)) for d in claimed]
        results = self._deliver_batch(self.targets[name], items)
        outbox.finish(db, results, self.clock())
        return sum(1 for r in results if r.outcome != "released")

    def _deliver_batch(
        self, target: Target, items: list[tuple[outbox.Delivery, Event | None]]
    ) -> list[outbox.Result]:
        results: list[outbox.Result] = []
        session = self.session(target.name)
        for index, (d, event) in enumerate(items):
            if not self.may_send():
                log.warning(
                    "stopped delivering to %r: this worker may have lost its lease", target.name
                )
                return results + self._release(target, items[index:])
            if event is None:
                results.append(
                    outbox.Result(
                        d.id, target.name, "failed", error="the event is no longer stored"
                    )
                )
                continue
            try:
                status = target.deliver(session, event, d.id)
            except EndpointGone as exc:
                message = target.scrub(str(exc))
                log.error("forwarding target %r is gone and now disabled: %s", target.name, message)
                results.append(outbox.Result(d.id, target.name, "disabled", exc.status, message))
                results.extend(self._release(target, items[index + 1 :]))
                return results
            except ForwardError as exc:
                result = self._failure(target, d, exc.status, target.scrub(str(exc)), exc)
                results.append(result)
                if result.outcome == "retried":
                    # The target is down or throttling: leave its other rows for later, in order.
                    self.blocked_until[target.name] = result.next_attempt_at or self.clock()
                    results.extend(self._release(target, items[index + 1 :]))
                    return results
                continue
            except Exception as exc:  # a bug in a target must not stop the worker
                log.exception("forwarding to %r raised unexpectedly", target.name)
                error = ForwardError(f"internal error: {type(exc).__name__}")
                results.append(self._failure(target, d, None, str(error), error))
                results.extend(self._release(target, items[index + 1 :]))
                return results
            results.append(outbox.Result(d.id, target.name, "delivered", status=status))
            if target.name in self.failing:
                self.failing.discard(target.name)
                log.info("forwarding target %r delivers again", target.name)
        return results

    def _failure(
        self,
        target: Target,
        d: outbox.Delivery,
        status: int | None,
        message: str,
        exc: ForwardError,
    ) -> outbox.Result:
        now = self.clock()
        if not exc.retryable:
            log.error(
                "delivery %s of %s %s to %r failed for good: %s",
                d.id,
                d.event_kind,
                d.event_id,
                target.name,
                message,
            )
            return outbox.Result(d.id, target.name, "failed", status, message)
        horizon = d.retry_since + self.settings.forward_give_up_hours * 3600
        if now >= horizon:
            log.error(
                "delivery %s to %r failed; giving up after %g hours: %s",
                d.id,
                target.name,
                self.settings.forward_give_up_hours,
                message,
            )
            return outbox.Result(
                d.id,
                target.name,
                "failed",
                status,
                f"gave up after {d.attempts + 1} attempts: {message}",
            )
        if exc.retry_after is not None:
            wait = max(exc.retry_after, MIN_RETRY_AFTER)
        else:
            wait = self.backoff(d.attempts + 1)
        next_at = min(now + wait, horizon)
        if target.name not in self.failing:
            self.failing.add(target.name)
            log.warning(
                "forwarding target %r failed (%s); retrying with backoff, events are kept",
                target.name,
                message,
            )
        return outbox.Result(d.id, target.name, "retried", status, message, next_attempt_at=next_at)

    def _release(
        self, target: Target, rest: list[tuple[outbox.Delivery, Event | None]]
    ) -> list[outbox.Result]:
        return [outbox.Result(d.id, target.name, "released") for d, _ in rest]
