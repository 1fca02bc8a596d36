"""`python -m exporter` runs the releasebits CLI."""

from exporter.cli import main

main()
