"""The DORA definitions on hand-made rollout histories: quantiles, windows, change failures,
recovery (a) and (b), rework and the unrecovered age."""

from __future__ import annotations

import pytest

from exporter.dora.compute import compute, quantile
from storage.dora import Rollout

DAY = 86400.0
NOW = 1_000_000_000.0


def r(days_ago: float, *, rollback: bool = False, crash: bool = False, incidents: int = 0,
      unresolved: int = 0, resolved_days_ago: float | None = None) -> Rollout:  # fmt: skip
    return Rollout(
        id=f"r{days_ago}",
        version=f"v{days_ago}",
        ts=NOW - days_ago * DAY,
        is_rollback=rollback,
        crash_failure_ts=NOW if crash else None,
        incidents=incidents,
        unresolved=unresolved,
        last_resolved_ts=None if resolved_days_ago is None else NOW - resolved_days_ago * DAY,
    )


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        # numpy.percentile([...], q * 100) with the default (linear) method, worked by hand:
        ([7.0], 0.5, 7.0),
        ([1.0, 2.0, 3.0, 4.0], 0.5, 2.5),  # rank 1.5
        ([1.0, 2.0, 3.0, 4.0], 0.9, 3.7),  # rank 2.7: 3 + 0.7 * (4 - 3)
        ([10.0, 1.0, 5.0], 0.9, 9.0),  # sorted 1, 5, 10; rank 1.8: 5 + 0.8 * 5
        ([2.0, 2.0, 2.0, 100.0], 0.5, 2.0),
    ],
)
def test_quantile_is_numpy_linear_interpolation(
    values: list[float], q: float, expected: float
) -> None:
    assert quantile(values, q) == pytest.approx(expected)


def test_windows_count_rollouts_by_their_time() -> None:
    rows = [r(100), r(60), r(20), r(5), r(0.5)]
    values = compute(rows, [], NOW)
    assert {w: v.deployments for w, v in values.windows.items()} == {
        "1d": 1,
        "7d": 2,
        "30d": 3,
        "90d": 4,
    }
    assert values.windows["30d"].change_failure_ratio == 0.0
    assert values.windows["30d"].lead_time == {}  # absent: no data, never 0


def test_no_rollouts_in_a_window_means_absent_ratios() -> None:
    values = compute([r(40)], [], NOW)
    day = values.windows["1d"]
    assert (day.deployments, day.change_failures) == (0, 0)
    assert day.change_failure_ratio is None and day.rework_ratio is None


def test_a_rollback_makes_the_replaced_rollout_a_failure_recovered_by_the_rollback() -> None:
    rows = [r(10), r(6), r(5, rollback=True), r(2)]
    w = compute(rows, [], NOW).windows["7d"]
    assert (w.deployments, w.change_failures) == (3, 1)  # the rollout of 6 days ago
    assert w.rework_ratio == pytest.approx(1 / 3)  # the rollback ended it
    assert w.recovery_time == {0.5: DAY, 0.9: DAY}


def test_recovery_is_the_earlier_of_the_next_good_rollout_and_the_last_resolution() -> None:
    rows = [
        r(20, incidents=2, resolved_days_ago=19.5),  # (b): resolved 12 h later
        r(10),
        r(8, incidents=1, resolved_days_ago=1),  # (a): the next good rollout, 2 days later
        r(6),
        r(4, incidents=2, unresolved=1, resolved_days_ago=3.9),  # one still open: (a) only
        r(3, crash=True),  # a failure too: not the end of the one before
        r(1),
    ]
    w = compute(rows, [], NOW).windows["30d"]
    assert w.change_failures == 4
    # Recoveries: 0.5 d, 2 d, 3 d (from 4 to 1 days ago), 2 d -> sorted 0.5, 2, 2, 3.
    assert w.recovery_time[0.5] == pytest.approx(2 * DAY)
    assert w.recovery_time[0.9] == pytest.approx((2 + 0.7 * 1) * DAY)  # rank 2.7
    assert w.rework_ratio == pytest.approx(3 / 7)  # r(10), r(6), r(1)


def test_the_oldest_unrecovered_failure_ages() -> None:
    rows = [r(5), r(3, crash=True), r(2, incidents=1, unresolved=1)]
    values = compute(rows, [], NOW)
    assert values.unrecovered_failure_age == pytest.approx(3 * DAY)
    assert compute([r(5)], [], NOW).unrecovered_failure_age == 0


def test_lead_times_are_per_commit_in_the_window_and_only_positive() -> None:
    leads = [(NOW - 2 * DAY, 3600.0), (NOW - 2 * DAY, 7200.0), (NOW - 20 * DAY, 100.0)]
    values = compute([r(20), r(2)], leads, NOW)
    assert values.windows["7d"].lead_time == {0.5: 5400.0, 0.9: pytest.approx(6840.0)}
    assert values.windows["30d"].lead_time[0.5] == 3600.0
