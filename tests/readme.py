"""The README's shell blocks, read as a user copies them: by section, in order."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"
_BLOCK_RE = re.compile(r"```sh\n(.*?)```", re.S)


def section(title: str) -> str:
    """The text of `## title` up to the next `## ` heading."""
    text = README.read_text()
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def sh_blocks(title: str) -> list[str]:
    """Every ```sh block of a section, exactly as written."""
    return _BLOCK_RE.findall(section(title))
