"""Serve a genre model over HTTP: a JSON API, its OpenAPI docs and a drag-and-drop web page.

``genrekit serve`` runs :func:`create_app` under uvicorn. FastAPI is imported only when an app is
built, so the CLI can show the default limits without paying for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._defaults import DEFAULT_MAX_DURATION_S, DEFAULT_MAX_QUEUE, DEFAULT_MAX_UPLOAD_MB, DEFAULT_WORKERS

if TYPE_CHECKING:
    from fastapi import FastAPI

    from ..inference import GenreClassifier

__all__ = ["DEFAULT_MAX_DURATION_S", "DEFAULT_MAX_QUEUE", "DEFAULT_MAX_UPLOAD_MB", "DEFAULT_WORKERS", "create_app"]


def create_app(model: GenreClassifier, **limits: Any) -> FastAPI:
    """Build the app serving ``model``; see :func:`genrekit.serve.app.create_app` for the limits."""
    from .app import create_app as _create

    return _create(model, **limits)
