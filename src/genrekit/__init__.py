"""genrekit: music genre classification, trained and evaluated without leaks, and ready to classify your music."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
