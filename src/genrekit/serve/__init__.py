"""Serve a genre model over HTTP: a JSON API, its OpenAPI docs and a drag-and-drop web page.

``genrekit serve`` runs :func:`create_app` under uvicorn. FastAPI is imported only when an app is
built, so the CLI can show the default limits without paying for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._defaults import (
    DEFAULT_HEADER_TIMEOUT_S,
    DEFAULT_KEEP_ALIVE_S,
    DEFAULT_MAX_DURATION_S,
    DEFAULT_MAX_QUEUE,
    DEFAULT_MAX_UPLOAD_MB,
    DEFAULT_MAX_UPLOADS,
    DEFAULT_MAX_UPLOADS_PER_CLIENT,
    DEFAULT_MAX_UPLOAD_S,
    DEFAULT_MIN_UPLOAD_KBPS,
    DEFAULT_UPLOAD_GRACE_S,
    DEFAULT_WORKERS,
    TOKEN_ENV,
)

if TYPE_CHECKING:
    from fastapi import FastAPI

    from ..classifier import GenreClassifier

__all__ = [
    "DEFAULT_HEADER_TIMEOUT_S",
    "DEFAULT_KEEP_ALIVE_S",
    "DEFAULT_MAX_DURATION_S",
    "DEFAULT_MAX_QUEUE",
    "DEFAULT_MAX_UPLOAD_MB",
    "DEFAULT_MAX_UPLOADS",
    "DEFAULT_MAX_UPLOADS_PER_CLIENT",
    "DEFAULT_MAX_UPLOAD_S",
    "DEFAULT_MIN_UPLOAD_KBPS",
    "DEFAULT_UPLOAD_GRACE_S",
    "DEFAULT_WORKERS",
    "TOKEN_ENV",
    "create_app",
    "run_server",
]


def create_app(model: GenreClassifier, **limits: Any) -> FastAPI:
    """Build the app serving ``model``; see :func:`genrekit.serve.app.create_app` for the limits."""
    from .app import create_app as _create

    return _create(model, **limits)


def run_server(app: FastAPI, *, host: str, port: int, log_level: str = "info", header_timeout_s: float = DEFAULT_HEADER_TIMEOUT_S) -> None:
    """Run ``app`` under uvicorn with connection timeouts; see :mod:`genrekit.serve._http`."""
    from ._http import run

    run(app, host=host, port=port, log_level=log_level, header_timeout_s=header_timeout_s)
