"""Metric families declared as data, built fresh for every scrape and filled by name."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)

_Family = CounterMetricFamily | GaugeMetricFamily | HistogramMetricFamily | InfoMetricFamily
_TYPES: dict[str, type[_Family]] = {
    "counter": CounterMetricFamily,
    "gauge": GaugeMetricFamily,
    "histogram": HistogramMetricFamily,
    "info": InfoMetricFamily,
}
# What the exposition appends to a family's name (README and dashboards use the full names).
_SUFFIX = {"counter": "_total", "info": "_info"}


@dataclass(frozen=True)
class Family:
    """One metric family: its name as exposed (counters end in _total; info families are
    declared without _info, which the exposition adds), type, help text and labels."""

    name: str
    type: str
    help: str
    labels: tuple[str, ...] = ()

    @property
    def exposed_name(self) -> str:
        suffix = _SUFFIX.get(self.type, "")
        return self.name if self.name.endswith(suffix) else self.name + suffix

    def build(self) -> _Family:
        return _TYPES[self.type](self.name, self.help, labels=list(self.labels))


class Families:
    """The families of one scrape, in declaration order, each filled through `add`."""

    def __init__(self, specs: Iterable[Family]):
        self._by_name: dict[str, _Family] = {spec.name: spec.build() for spec in specs}

    def add(self, name: str, labels: Sequence[str], *value: Any) -> None:
        """add_metric on the family `name`: a value, an info dict, or (buckets, sum)."""
        self._by_name[name].add_metric(list(labels), *value)

    def __iter__(self) -> Iterator[Metric]:
        return iter(self._by_name.values())


def histogram_buckets(bounds: tuple[float, ...], counts: list[int]) -> list[tuple[str, float]]:
    """(le, cumulative count) pairs of a stored histogram (per-bucket counts, +Inf last)."""
    labels = [*(str(int(b)) if b == int(b) else str(b) for b in bounds), "+Inf"]
    out: list[tuple[str, float]] = []
    total = 0
    for le, n in zip(labels, counts, strict=True):
        total += n
        out.append((le, total))
    return out
