"""``genrekit serve``: the HTTP API and the web page under uvicorn."""

from __future__ import annotations

import ipaddress
from typing import Annotated, Optional

import typer

from ..serve import (
    DEFAULT_HEADER_TIMEOUT_S,
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
from .._text import words
from ._app import add_commands, console, err_console, handle_errors

__all__ = ["register", "serve", "is_loopback"]

LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")  # uvicorn's; another fails only once the server runs


def is_loopback(host: str) -> bool:
    """True when ``host`` only accepts connections from this machine (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(
    host: Annotated[str, typer.Option(metavar="HOST", help="Address to listen on; 0.0.0.0 exposes the server to your network (set a --token).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="TCP port.")] = 8000,
    model: Annotated[str, typer.Option("--model", "-m", metavar="NAME|RUN|FILE", help="'default' or 'zero-shot' (shipped), a run folder, a model.pt, or an .onnx file from genrekit export.")] = "default",
    workers: Annotated[int, typer.Option(min=1, help="Inference threads: how many songs are decoded and classified at once.")] = DEFAULT_WORKERS,
    max_upload_mb: Annotated[float, typer.Option(help="Largest accepted upload in MB; larger gets 413.")] = DEFAULT_MAX_UPLOAD_MB,
    max_duration_s: Annotated[float, typer.Option(help="Longest accepted audio in seconds; longer gets 422.")] = DEFAULT_MAX_DURATION_S,
    queue: Annotated[int, typer.Option(min=0, help="Uploaded songs that may wait for a busy worker; beyond that the answer is 503 with Retry-After.")] = DEFAULT_MAX_QUEUE,
    max_uploads: Annotated[int, typer.Option(min=1, help="Uploads that may be arriving at once; beyond that the answer is 503.")] = DEFAULT_MAX_UPLOADS,
    max_uploads_per_client: Annotated[int, typer.Option(min=1, help="Of --max-uploads, how many one client address may hold; beyond that the answer is 503.")] = DEFAULT_MAX_UPLOADS_PER_CLIENT,
    upload_grace_s: Annotated[float, typer.Option(help="Seconds an upload may take before --min-upload-kbps applies.")] = DEFAULT_UPLOAD_GRACE_S,
    min_upload_kbps: Annotated[float, typer.Option(help="Slowest accepted average upload rate (kB/s) after the grace period; slower gets 408.")] = DEFAULT_MIN_UPLOAD_KBPS,
    max_upload_s: Annotated[float, typer.Option(help="Longest an upload may take in all, however fast; longer gets 408.")] = DEFAULT_MAX_UPLOAD_S,
    header_timeout_s: Annotated[float, typer.Option(min=0.1, help="Seconds a connection has to send its request headers before it is closed.")] = DEFAULT_HEADER_TIMEOUT_S,
    token: Annotated[Optional[str], typer.Option(metavar="TOKEN", envvar=TOKEN_ENV, show_envvar=True, help="Require 'Authorization: Bearer TOKEN' on /v1/ requests (prefer the environment variable: a command line is visible to other users).")] = None,
    log_level: Annotated[str, typer.Option(metavar="critical|error|warning|info|debug", help="uvicorn log level: critical, error, warning, info, debug.")] = "info",
    backend: Annotated[str, typer.Option(metavar="auto|torch|onnxruntime", help="What runs the network: auto (onnxruntime where it is faster and installed), torch or onnxruntime.")] = "auto",
    device: Annotated[str, typer.Option(metavar="auto|cpu|cuda|mps", help="Where the network runs: auto (a CUDA GPU, then MPS, then the CPU, as far as the runtime can use them), cpu, cuda or mps.")] = "auto",
) -> None:
    """Serve a model: POST /v1/predict, GET /v1/models, GET /healthz, API docs at /docs and a web page at /.

    Requests share one loaded model and a bounded queue; uploads are limited in size, time and number per
    client (the options below), so one client cannot take the service from the others.

    Examples:

      genrekit serve          (then open http://127.0.0.1:8000/ in a browser)

      curl -F file=@song.ogg '127.0.0.1:8000/v1/predict?top_k=5&segments=true'

      GENREKIT_TOKEN=s3cret genrekit serve --host 0.0.0.0 --workers 2 --queue 8
    """
    import sys

    from ..engines.local import usable_cpus
    from ..classifier import load_model
    from ..serve import create_app, run_server

    if log_level not in LOG_LEVELS:
        err_console.print(f"[bold red]error:[/] The '--log-level' option must be one of {words(LOG_LEVELS)}. Got {log_level!r} instead.")
        raise typer.Exit(2)
    # Each request thread runs the network with its share of the usable CPUs (affinity and cgroup quota), not more.
    threads = max(1, usable_cpus() // workers)
    with handle_errors(serve):
        classifier = load_model(model, backend=backend, device=device, threads=threads)
        app = create_app(
            classifier, max_upload_mb=max_upload_mb, max_duration_s=max_duration_s, max_queue=queue, workers=workers,
            max_uploads=max_uploads, max_uploads_per_client=max_uploads_per_client, upload_grace_s=upload_grace_s,
            min_upload_kbps=min_upload_kbps, max_upload_s=max_upload_s, token=token,
        )
    if token is None and not is_loopback(host):
        err_console.print(
            f"[bold yellow]warning:[/] listening on {host} without a token: anyone who can reach this port can use the server. "
            f"Set {TOKEN_ENV} (or --token), or serve behind a reverse proxy that authenticates.",
            soft_wrap=True,
        )
    if "torch" in sys.modules:  # a model PyTorch runs: its intra-op pool gets the same share
        sys.modules["torch"].set_num_threads(threads)
    console.print(f"[bold green]serving[/] {classifier.name} on http://{host}:{port}/ (API docs at /docs)" + (", token required" if token else ""))
    run_server(app, host=host, port=port, log_level=log_level, header_timeout_s=header_timeout_s)


def register(app: typer.Typer) -> None:
    add_commands(app, serve)
