"""The README's shell blocks, read as a user copies them: by section, in order."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"
_BLOCK_RE = re.compile(r"```sh\n(.*?)```", re.S)


def section(title: str) -> str:
    """The text under the heading `title` (## or ###) up to the next heading of its level or
    above."""
    text = README.read_text()
    match = re.search(rf"^(#{{2,3}}) {re.escape(title)}\n", text, re.M)
    assert match is not None, f"README has no section {title!r}"
    level = len(match.group(1))
    end = re.compile(rf"^#{{2,{level}}} ", re.M).search(text, match.end())
    return text[match.start() : end.start() if end else len(text)]


def sh_blocks(title: str) -> list[str]:
    """Every ```sh block of a section, exactly as written."""
    return _BLOCK_RE.findall(section(title))
