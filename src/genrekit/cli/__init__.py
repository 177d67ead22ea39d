"""The ``genrekit`` command line: typer sub-commands, one module per job.

Each command parses options, builds a config, calls one library function and turns the outcome
into output and an exit code. Library errors become one red line, never a traceback.
"""

from __future__ import annotations

from . import data, export, organize, predict
from . import serve
from . import train
from ._app import app, main

__all__ = ["app", "main"]

data.register(app)
train.register(app)
serve.register(app)
predict.register(app)
export.register(app)
organize.register(app)
