"""Default server limits, apart from the app so the CLI can show them without importing FastAPI."""

from __future__ import annotations

__all__ = [
    "DEFAULT_MAX_DURATION_S",
    "DEFAULT_MAX_QUEUE",
    "DEFAULT_MAX_UPLOAD_MB",
    "DEFAULT_MAX_UPLOADS",
    "DEFAULT_MAX_UPLOADS_PER_CLIENT",
    "DEFAULT_MAX_UPLOAD_S",
    "DEFAULT_MIN_UPLOAD_KBPS",
    "DEFAULT_UPLOAD_GRACE_S",
    "DEFAULT_WORKERS",
    "DEFAULT_HEADER_TIMEOUT_S",
    "DEFAULT_KEEP_ALIVE_S",
    "TOKEN_ENV",
]

DEFAULT_MAX_UPLOAD_MB = 50.0
DEFAULT_MAX_DURATION_S = 900.0
DEFAULT_WORKERS = 1
DEFAULT_MAX_QUEUE = 16
DEFAULT_MAX_UPLOADS = 32
# One client address may hold a quarter of the upload slots: 32 slow clients from one address held all 32.
DEFAULT_MAX_UPLOADS_PER_CLIENT = 8
# An upload gets 10 s, then must average 10 kB/s: a 50 MB file at a slow 100 kB/s still fits, a client
# trickling 100 B/s (which held every slot for 40 s before) is cut off after ~10 s.
DEFAULT_UPLOAD_GRACE_S = 10.0
DEFAULT_MIN_UPLOAD_KBPS = 10.0
# The rate alone let a 2 MB upload at 12 kB/s hold its slot ~3 min and a 50 MB one ~70 min: every upload
# must also end within this (a 50 MB file needs 170 kB/s, a 5 MB song 17 kB/s).
DEFAULT_MAX_UPLOAD_S = 300.0
DEFAULT_HEADER_TIMEOUT_S = 10.0  # a connection must send its request headers within this
DEFAULT_KEEP_ALIVE_S = 5  # an idle kept-alive connection is closed after this (uvicorn's default)
TOKEN_ENV = "GENREKIT_TOKEN"
