"""The grid's rows as HTML, written here rather than in the Jinja template.

500 components x 5 stages are 2,500 cells of ~15 values each. As Jinja expressions every value
is an attribute lookup plus a Markup object (markupsafe.escape); measured on the 500 x 5
benchmark that was ~60% of the page's time. Here each value goes through html.escape (C, plain
str) once. Every value that can come from a user (component, stage, version, commit SHA, commit link) is
escaped, and so is every text a key column reads; the rest (times, result classes, badge colours)
are made by ReleaseBits from fixed vocabularies. tests/exporter/ui/test_pages.py posts hostile text into each field.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from markupsafe import Markup

from exporter.badges.model import RESULT_COLORS
from exporter.ui.status import Cell, Grid, Moment, Row


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


def _stage_cells(row: Row, stages: Sequence[str]) -> str:
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
            f'<td data-label="{label}" class="cell{recent}">{_version(c)}{_badges(c)}</td>'
        )
    return "\n".join(parts)


def _pill(text: str, color: str, title: str = "") -> str:
    hover = f' title="{escape(title)}"' if title else ""
    return f'<span class="pill c-{color}"{hover}>{escape(text)}</span>'


def _build(row: Row) -> str:
    if row.build is None:
        return '<td data-label="Last build"><span class="none">none</span></td>'
    rclass, at = row.build
    return f'<td data-label="Last build">{_pill(rclass, RESULT_COLORS[rclass])} {when(at)}</td>'


def _keys(row: Row, grid: Grid) -> str:
    parts = []
    for stage in grid.key_stages:
        for col, f in zip(grid.key_columns, row.keys[stage], strict=True):
            label = escape(f"{col.title} ({stage})")
            if f is None:
                shown = '<span class="none">\u2013</span>'  # an en dash: no figure
            elif f.color:
                shown = _pill(f.text, f.color, f.title)
            else:
                shown = f'<span title="{escape(f.title)}">{escape(f.text)}</span>'
            parts.append(f'<td data-label="{label}" class="key">{shown}</td>')
    return "".join(parts)


def grid_rows(grid: Grid, link: bool = True) -> Markup:
    """The grid's <tbody> rows: component, one cell per stage, last build, key figures."""
    out = []
    for row in grid.rows:
        name = escape(row.component)
        head = f'<a href="/ui/components/{name}">{name}</a>' if link else name
        out.append(
            f'<tr><th scope="row" data-label="Component">{head}</th>\n'
            f"{_stage_cells(row, grid.stages)}\n{_build(row)}{_keys(row, grid)}</tr>\n"
        )
    return Markup("".join(out))  # noqa: S704 - every user value went through escape()
