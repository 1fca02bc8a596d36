"""Mutation scores per core module from mutmut's results in mutants/ (run by mutation.sh).

A mutant counts as detected when a test failed on it (killed) or the tests ran past mutmut's
time limit on it (timeout: the change made the code loop). Every other mutant (survived, no
test reaching it, suspicious, not checked) counts against the score: none is set aside.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

from mutmut.stats import status_by_exit_code

# name: (files, the target score the issue set)
GROUPS: dict[str, tuple[tuple[str, ...], float]] = {
    "validation": (("exporter/ingest/validation.py", "exporter/names.py"), 0.85),
    "outbox": (("storage/outbox.py", "exporter/forwarding/deliverer.py"), 0.85),
    "sentry": (("exporter/pollers/sentry.py", "exporter/pollers/client.py"), 0.88),
    "events": (
        (
            "storage/events.py",
            "storage/aggregates.py",
            "storage/idempotency.py",
            "storage/pagination.py",
        ),
        0.90,
    ),
    "badges": (("exporter/badges/model.py",), 0.92),
}
DETECTED = ("killed", "timeout", "caught by type check")
MUTANTS = Path("mutants")


def patterns(group: str) -> list[str]:
    """mutmut's mutant-name globs for a group's files."""
    return [path.removesuffix(".py").replace("/", ".") + ".*" for path in GROUPS[group][0]]


def statuses(path: str) -> Counter[str]:
    meta = MUTANTS / (path + ".meta")
    if not meta.exists():
        return Counter()
    codes = json.loads(meta.read_text())["exit_code_by_key"]
    return Counter(status_by_exit_code[code] for code in codes.values())


def survivors(path: str) -> list[str]:
    meta = MUTANTS / (path + ".meta")
    if not meta.exists():
        return []
    codes = json.loads(meta.read_text())["exit_code_by_key"]
    return sorted(k for k, v in codes.items() if status_by_exit_code[v] not in DETECTED)


def report(groups: list[str], *, show_survivors: bool) -> int:
    """Print the table; returns 1 when a group is under its target."""
    print(
        f"{'module':<12} {'score':>7} {'target':>7} {'detected':>9} {'killed':>7} "
        f"{'timeout':>8} {'survived':>9} {'no tests':>9} {'other':>6}"
    )
    below = 0
    for group in groups:
        files, target = GROUPS[group]
        counts: Counter[str] = Counter()
        for path in files:
            counts += statuses(path)
        total = sum(counts.values())
        detected = sum(counts[s] for s in DETECTED)
        other = total - detected - counts["survived"] - counts["no tests"]
        score = detected / total if total else 0.0
        below += score < target
        print(
            f"{group:<12} {score:>7.1%} {target:>7.0%} {f'{detected}/{total}':>9} "
            f"{counts['killed']:>7} {counts['timeout']:>8} {counts['survived']:>9} "
            f"{counts['no tests']:>9} {other:>6}"
        )
        if show_survivors:
            for path in files:
                for name in survivors(path):
                    print(f"    {name}")
    return 1 if below else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("groups", nargs="*", help=f"some of: {', '.join(GROUPS)} (default all)")
    parser.add_argument("--groups", dest="list_groups", action="store_true")
    parser.add_argument("--patterns", metavar="GROUP", choices=list(GROUPS))
    parser.add_argument("--survivors", action="store_true", help="list undetected mutants")
    args = parser.parse_args()
    unknown = [g for g in args.groups if g not in GROUPS]
    if unknown:
        parser.error(f"unknown module group {unknown[0]!r}; choose from {', '.join(GROUPS)}")
    if args.list_groups:
        print("\n".join(GROUPS))
        return 0
    if args.patterns:
        print("\n".join(patterns(args.patterns)))
        return 0
    return report(args.groups or list(GROUPS), show_survivors=args.survivors)


if __name__ == "__main__":
    sys.exit(main())
