"""ReleaseBits: CI/CD events and release health as Prometheus metrics, badges and forwards."""

from __future__ import annotations

__version__ = "0.1.0"
