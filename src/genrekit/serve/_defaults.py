"""Default server limits, apart from the app so the CLI can show them without importing FastAPI."""

from __future__ import annotations

__all__ = ["DEFAULT_MAX_DURATION_S", "DEFAULT_MAX_QUEUE", "DEFAULT_MAX_UPLOAD_MB", "DEFAULT_WORKERS"]

DEFAULT_MAX_UPLOAD_MB = 50.0
DEFAULT_MAX_DURATION_S = 900.0
DEFAULT_WORKERS = 1
DEFAULT_MAX_QUEUE = 16
