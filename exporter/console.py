"""What every CLI command shares: the one-line error and exit status 1."""

from __future__ import annotations

import sys
from typing import NoReturn

import click


def fail(message: str) -> NoReturn:
    """Print `releasebits: error: <message>` (one line, stderr) and exit 1."""
    click.echo(f"releasebits: error: {message}", err=True)
    sys.exit(1)
