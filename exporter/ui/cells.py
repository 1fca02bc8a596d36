"""The grid's stage cells as HTML, written here rather than in the Jinja template.

500 components x 5 stages are 2,500 cells of ~15 values each. As Jinja expressions every value
is an attribute lookup plus a Markup object (markupsafe.escape); measured on the 500 x 5
benchmark that was ~60% of the page's time. Here each value goes through html.escape (C, plain
str) once. Every value that can come from a user (stage, version, commit SHA, commit link) is
escaped; the rest (times, result classes, badge colours and percentages) are made by ReleaseBits
from fixed vocabularies. tests/exporter/ui/test_pages.py posts hostile text into each field.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from markupsafe import Markup

from exporter.badges.model import RESULT_COLORS
from exporter.ui.status import Cell, Moment, Row


def when(m: Moment) -> str:
    """Relative time, the exact UTC time on hover (both made here: digits and words only)."""
    return f'<time datetime="{m.iso}" title="{m.exact}">{m.ago}</time>'


def when_html(m: Moment) -> Markup:
    """`when` for the templates."""
    return Markup(when(m))  # noqa: S704 - made here from a Moment: digits and words only


def _version(c: Cell) -> str:
    if c.version is None:
        return '<div class="none">no successful deployment</div>'
    out = f'<div><span class="version">{escape(c.version)}</span>'
    if c.commit_sha:
        short = escape(c.commit_sha[:10])
        if c.commit_url:
            out += f' <a class="sha" href="{escape(c.commit_url)}">{short}</a>'
        else:
            out += f' <code class="sha">{short}</code>'
    new = ' <span class="new">new</span>' if c.recent else ""
    since = when(c.since) if c.since is not None else ""
    return out + f'</div><div class="since">since {since}{new}</div>'


def _badges(c: Cell) -> str:
    out = '<div class="badges">'
    if c.last_result:
        color = RESULT_COLORS[c.last_result]
        at = f" {when(c.last_at)}" if c.last_at is not None else ""
        out += f'<span class="last">last <span class="pill c-{color}">{c.last_result}</span>{at}</span>'
    if c.crash_free is not None:
        badge = c.crash_free
        out += f' <span class="pill c-{badge.color}">crash-free {escape(badge.message)}</span>'
    return out + "</div>"


def stage_cells(row: Row, stages: Sequence[str]) -> Markup:
    """One <td> per stage of a grid row, in the order of `stages`."""
    parts = []
    for stage in stages:
        label = escape(stage)
        c = row.cells.get(stage)
        if c is None:
            parts.append(
                f'<td data-label="{label}" class="cell absent"><span class="none">not deployed'
                "</span></td>"
            )
            continue
        recent = " recent" if c.recent else ""
        parts.append(
            f'<td data-label="{label}" class="cell{recent}">{_version(c)}{_badges(c)}</td>\n'
        )
    return Markup("".join(parts))  # noqa: S704 - every user value went through escape()
