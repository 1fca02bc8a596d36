"""The DORA values of one component and stage, from its stored rollouts; pure.

Definitions (README "DORA keys"): per window ending now, by rollout time: rollouts, change
failures among them, their ratio, rework (rollouts that ended a change failure) ratio, change
lead time per commit and recovery time per recovered change failure (median and p90 by linear
interpolation between closest ranks, numpy.percentile's default), and the age of the oldest
change failure not recovered yet.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from storage.dora import Rollout, failures, recovered_at

WINDOWS: dict[str, float] = {
    "1d": 86400.0,
    "7d": 7 * 86400.0,
    "30d": 30 * 86400.0,
    "90d": 90 * 86400.0,
}
LONGEST = max(WINDOWS.values())
QUANTILES = (0.5, 0.9)


def quantile(values: Sequence[float], q: float) -> float:
    """numpy.percentile(values, q * 100) with its default linear interpolation."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("no values")
    rank = q * (len(ordered) - 1)
    lo, hi = math.floor(rank), math.ceil(rank)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (rank - lo)


@dataclass(frozen=True)
class Window:
    """The values of one window; None where a value is absent (no rollouts, no data)."""

    deployments: int
    change_failures: int
    change_failure_ratio: float | None
    rework_ratio: float | None
    lead_time: dict[float, float] = field(default_factory=dict)  # quantile -> seconds
    recovery_time: dict[float, float] = field(default_factory=dict)


@dataclass(frozen=True)
class SeriesValues:
    windows: dict[str, Window]
    unrecovered_failure_age: float


def compute(
    rollouts: Sequence[Rollout], lead_times: Sequence[tuple[float, float]], now: float
) -> SeriesValues:
    """`rollouts`: a series' consecutive rollouts, oldest first, covering the longest window
    and the one before it; `lead_times`: (rollout time, seconds) per commit."""
    rows = [r for r in rollouts if r.ts <= now]
    failed = failures(rows)
    recovery = [recovered_at(rows, failed, i) if f else None for i, f in enumerate(failed)]
    recovery = [end if end is None or end <= now else None for end in recovery]
    windows = {}
    for name, seconds in WINDOWS.items():
        start = now - seconds
        inside = [i for i, r in enumerate(rows) if r.ts > start]
        n = len(inside)
        cf = sum(1 for i in inside if failed[i])
        rework = sum(1 for i in inside if not failed[i] and i > 0 and failed[i - 1])
        leads = [lead for ts, lead in lead_times if start < ts <= now and lead > 0]
        recoveries = [
            max(end - rows[i].ts, 0.0) for i in inside if (end := recovery[i]) is not None
        ]
        windows[name] = Window(
            deployments=n,
            change_failures=cf,
            change_failure_ratio=cf / n if n else None,
            rework_ratio=rework / n if n else None,
            lead_time={q: quantile(leads, q) for q in QUANTILES} if leads else {},
            recovery_time={q: quantile(recoveries, q) for q in QUANTILES} if recoveries else {},
        )
    open_ages = [now - rows[i].ts for i, f in enumerate(failed) if f and recovery[i] is None]
    return SeriesValues(windows, max(open_ages, default=0.0))
