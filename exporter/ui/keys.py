"""Key figures per component for the production stage: the grid's columns after the stages.

Each column is one `KeyColumn` whose `read` answers a `Figure` per component from rows storage
already keeps. The DORA keys (deployment frequency, lead time, change failure rate, time to
restore) become columns here once storage has them: one `KeyColumn` each whose `read` calls the
storage function, appended to `COLUMNS`; the grid, the templates and the tests need no change.
Until then the columns are the ones the deployment aggregates answer.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from exporter.badges.model import RESULT_COLORS
from exporter.settings import Settings
from storage.aggregates import Snapshot
from storage.db import Store


@dataclass(frozen=True)
class Figure:
    """What one grid cell says: text, a hover title, and optionally a badge colour name."""

    text: str
    title: str = ""
    color: str | None = None


@dataclass
class KeyInput:
    """What a column may read: the store, the settings, the scrape snapshot, the stage."""

    db: Store
    settings: Settings
    snapshot: Snapshot
    stage: str
    now: float

    @functools.cached_property
    def deployments(self) -> dict[str, dict[str, int]]:
        """Deployments to the stage per component and result class, all time (read once for
        every column that needs them)."""
        out: dict[str, dict[str, int]] = {}
        for row in self.snapshot.event_stats:
            if row["kind"] == "deployment" and row["stage"] == self.stage:
                out.setdefault(row["component"], {})[row["result_class"]] = int(row["count"])
        return out


@dataclass(frozen=True)
class KeyColumn:
    """One column: its heading, what it means (the heading's hover text), and its reader."""

    title: str
    help: str
    read: Callable[[KeyInput], Mapping[str, Figure]]  # component -> figure


def production_stages(settings: Settings) -> tuple[str, ...]:
    """The stages key figures are shown for (the stage deployments default to)."""
    return (settings.default_stage,)


def _deployments(inp: KeyInput) -> dict[str, Figure]:
    return {
        component: Figure(str(sum(by_result.values())), _by_result(by_result))
        for component, by_result in inp.deployments.items()
    }


def _by_result(by_result: Mapping[str, int]) -> str:
    return ", ".join(f"{n} {result}" for result, n in sorted(by_result.items()))


def _failed(inp: KeyInput) -> dict[str, Figure]:
    out = {}
    for component, by_result in inp.deployments.items():
        total = sum(by_result.values())
        failed = by_result.get("failure", 0) + by_result.get("error", 0)
        share = failed / total if total else 0.0
        color = RESULT_COLORS["success"] if failed == 0 else RESULT_COLORS["failure"]
        out[component] = Figure(f"{share:.0%}", f"{failed} of {total} failed or errored", color)
    return out


def _mean_duration(inp: KeyInput) -> dict[str, Figure]:
    out = {}
    for row in inp.snapshot.durations:
        if row["kind"] == "deployment" and row["stage"] == inp.stage and row["count"]:
            mean = row["sum"] / row["count"]
            title = f"mean of {row['count']} deployments that sent started_at"
            out[row["component"]] = Figure(format_duration(mean), title)
    return out


def format_duration(seconds: float) -> str:
    """'42s', '4m 12s', '1h 03m', '2d 4h': two units at most."""
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    if s < 86_400:
        return f"{s // 3600}h {s % 3600 // 60:02d}m"
    return f"{s // 86_400}d {s % 86_400 // 3600}h"


COLUMNS: tuple[KeyColumn, ...] = (
    KeyColumn(
        "Deployments",
        "Deployments recorded for this stage, all time (every host counts).",
        _deployments,
    ),
    KeyColumn(
        "Failed",
        "Share of those deployments whose result was a failure or an error, all time.",
        _failed,
    ),
    KeyColumn(
        "Mean duration",
        "Mean deployment duration (finished_at - started_at) for this stage.",
        _mean_duration,
    ),
)
