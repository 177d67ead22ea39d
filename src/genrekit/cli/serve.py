"""``genrekit serve``: the HTTP API and the web page under uvicorn."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from ..serve import DEFAULT_MAX_DURATION_S, DEFAULT_MAX_QUEUE, DEFAULT_MAX_UPLOAD_MB, DEFAULT_WORKERS
from ._app import console, handle_errors

__all__ = ["register", "serve"]


def serve(
    host: Annotated[str, typer.Option(help="Address to listen on; 0.0.0.0 exposes the server to your network.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    model: Annotated[str, typer.Option("--model", "-m", help="Shipped model name, run folder or model file.")] = "default",
    workers: Annotated[int, typer.Option(help="Inference threads: how many songs are decoded and classified at once.")] = DEFAULT_WORKERS,
    max_upload_mb: Annotated[float, typer.Option(help="Largest accepted upload in MB; larger gets 413.")] = DEFAULT_MAX_UPLOAD_MB,
    max_duration_s: Annotated[float, typer.Option(help="Longest accepted audio in seconds; longer gets 422.")] = DEFAULT_MAX_DURATION_S,
    queue: Annotated[int, typer.Option(help="Requests that may wait for a busy worker; beyond that the answer is 503 with Retry-After.")] = DEFAULT_MAX_QUEUE,
    log_level: Annotated[str, typer.Option(help="uvicorn log level: critical, error, warning, info, debug.")] = "info",
) -> None:
    """Serve a model: POST /v1/predict, GET /v1/models, GET /healthz, API docs at /docs and a web page at /.

    Examples:

      genrekit serve          (then open http://127.0.0.1:8000/ in a browser)

      curl -F file=@song.ogg '127.0.0.1:8000/v1/predict?top_k=5&segments=true'

      genrekit serve --model runs/cnn1 --port 9000 --workers 2 --queue 8
    """
    import torch
    import uvicorn

    from ..inference import load_model
    from ..serve import create_app

    with handle_errors():
        classifier = load_model(model)
        app = create_app(classifier, max_upload_mb=max_upload_mb, max_duration_s=max_duration_s, max_queue=queue, workers=workers)
    # Each worker thread runs torch ops with torch's intra-op pool: share the cores instead of oversubscribing them.
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))
    console.print(f"[bold green]serving[/] {classifier.name} on http://{host}:{port}/ (API docs at /docs)")
    uvicorn.run(app, host=host, port=port, log_level=log_level)


def register(app: typer.Typer) -> None:
    app.command()(serve)
