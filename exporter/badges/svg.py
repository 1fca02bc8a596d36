"""How a badge is drawn: SVG in shields.io's look, with badgepy's measured text widths."""

from __future__ import annotations

import functools
import hashlib
import html
import importlib.resources
import io

import badgepy
from badgepy.precalculated_text_measurer import PrecalculatedTextMeasurer

from exporter.badges.model import Resolved, clean_text, to_hex

# The font badgepy measures its widths for; Verdana (shields' first choice) has other widths.
FONT_FAMILY = "DejaVu Sans,Verdana,Geneva,sans-serif"
# DejaVu Sans Bold advances are 1.09-1.14x the regular ones on badge texts (measured with
# fontTools); badgepy only has regular widths, and for-the-badge sets the message in bold.
BOLD_FACTOR = 1.12


def etag_of(body: bytes) -> str:
    return hashlib.blake2b(body, digest_size=16).hexdigest()


@functools.lru_cache(maxsize=4096)
def render_svg(r: Resolved) -> tuple[bytes, str]:
    """SVG bytes and their ETag; cached per process (badgepy parses its output with minidom,
    ~0.7 ms a badge, and a README asks for the same few badges over and over)."""
    label, message = clean_text(r.label), clean_text(r.message)
    color, label_color = to_hex(r.color), to_hex(r.label_color)
    if r.style in ("flat", "flat-square"):
        svg = badgepy.badge(
            left_text=label,
            right_text=message,
            left_color=label_color,
            right_color=color,
            whole_title=f"{label}: {message}",
            style=r.style,
            measurer=_MEASURER,
        )
    elif r.style == "plastic":
        svg = _plastic(label, message, color, label_color)
    else:
        svg = _for_the_badge(label, message, color, label_color)
    body = svg.encode("utf-8")
    return body, etag_of(body)


# badgepy draws flat and flat-square; plastic and for-the-badge follow shields.io's geometry
# (badge-maker's renderers) with badgepy's measured widths.


def _load_measurer() -> PrecalculatedTextMeasurer:
    # badgepy's own default() uses importlib.resources.is_resource, deprecated since Python
    # 3.11 (a DeprecationWarning, an error under the tests' filterwarnings); same file, files().
    path = importlib.resources.files("badgepy") / "default-widths.json"
    return PrecalculatedTextMeasurer.from_json(io.StringIO(path.read_text(encoding="utf-8")))


_MEASURER = _load_measurer()


def _width(text: str) -> float:
    """Width of `text` in pixels at 11px (badgepy's widths are for 110px, scaled down by 10)."""
    return float(_MEASURER.text_width(text)) / 10


def _num(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def _esc(text: str) -> str:
    return html.escape(text, quote=True)


def _plastic(label: str, message: str, color: str, label_color: str) -> str:
    lw, mw = _width(label), _width(message)
    left, right = lw + 10, mw + 10
    total = left + right
    title = _esc(f"{label}: {message}")
    lx, mx = 10 * (1 + lw / 2 + 5), 10 * (left - 1 + mw / 2 + 5)
    texts = "".join(
        f'<text aria-hidden="true" x="{_num(x)}" y="140" fill="#010101" fill-opacity=".3" '
        f'transform="scale(.1)" textLength="{_num(10 * w)}">{_esc(t)}</text>'
        f'<text x="{_num(x)}" y="130" transform="scale(.1)" textLength="{_num(10 * w)}">'
        f"{_esc(t)}</text>"
        for t, x, w in ((label, lx, lw), (message, mx, mw))
    )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_num(total)}" height="18" role="img" '
        f'aria-label="{title}"><title>{title}</title>'
        '<linearGradient id="s" x2="0" y2="100%">'
        '<stop offset="0" stop-color="#fff" stop-opacity=".7"/>'
        '<stop offset=".1" stop-color="#aaa" stop-opacity=".1"/>'
        '<stop offset=".9" stop-color="#000" stop-opacity=".3"/>'
        '<stop offset="1" stop-color="#000" stop-opacity=".5"/></linearGradient>'
        f'<clipPath id="r"><rect width="{_num(total)}" height="18" rx="4" fill="#fff"/></clipPath>'
        f'<g clip-path="url(#r)"><rect width="{_num(left)}" height="18" fill="{_esc(label_color)}"/>'
        f'<rect x="{_num(left)}" width="{_num(right)}" height="18" fill="{_esc(color)}"/>'
        f'<rect width="{_num(total)}" height="18" fill="url(#s)"/></g>'
        f'<g fill="#fff" text-anchor="middle" font-family="{FONT_FAMILY}" '
        f'text-rendering="geometricPrecision" font-size="110">{texts}</g></svg>'
    )


def _for_the_badge(label: str, message: str, color: str, label_color: str) -> str:
    label, message = label.upper(), message.upper()
    spacing = 1.25  # letter spacing, as shields.io; textLength spreads the letters by it
    scale = 10 / 11  # 10px text; the widths are for 11px
    lw = _width(label) * scale + spacing * len(label)
    mw = _width(message) * scale * BOLD_FACTOR + spacing * len(message)
    left, right = lw + 24, mw + 24
    total = left + right
    title = _esc(f"{label}: {message}")
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_num(total)}" height="28" role="img" '
        f'aria-label="{title}"><title>{title}</title>'
        f'<g shape-rendering="crispEdges"><rect width="{_num(left)}" height="28" '
        f'fill="{_esc(label_color)}"/><rect x="{_num(left)}" width="{_num(right)}" height="28" '
        f'fill="{_esc(color)}"/></g>'
        f'<g fill="#fff" text-anchor="middle" font-family="{FONT_FAMILY}" '
        f'text-rendering="geometricPrecision" font-size="100">'
        f'<text transform="scale(.1)" x="{_num(10 * (12 + lw / 2))}" y="175" '
        f'textLength="{_num(10 * lw)}">{_esc(label)}</text>'
        f'<text transform="scale(.1)" x="{_num(10 * (left + 12 + mw / 2))}" y="175" '
        f'textLength="{_num(10 * mw)}" font-weight="bold">{_esc(message)}</text></g></svg>'
    )
