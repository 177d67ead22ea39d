"""The genrekit HTTP API and web page: a thin adapter over :mod:`genrekit.classifier`.

One model per server. Uploads stream into a private 0700 temp directory under a size limit, a
minimum rate and a time limit; at most ``max_uploads`` arrive at once, ``max_uploads_per_client`` of them
from one address; the folders of servers killed without cleaning up are removed at the next start.
Only a file that has fully arrived is admitted to inference, where a counter admits at most
``workers + max_queue`` and answers 503 with ``Retry-After`` (from the measured service time and the
jobs ahead) beyond that: slow clients cannot hold the workers' slots, and a burst costs a quick refusal
instead of unbounded memory. Decoding and inference run in a
thread pool so the event loop keeps answering ``/healthz`` and the page. With a token, ``/v1/`` routes
require ``Authorization: Bearer <token>``.
"""

from __future__ import annotations

import asyncio
import hmac
import math
import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline

from .._version import __version__
from .._params import Constraint, Interval, check_values
from ..audio import declared_duration
from ..exceptions import AudioDecodeError, AudioTooLongError, ParameterError
from ..plots.palette import genre_colors
from ..results import PredictionError
from ..tags import DEFAULT_TAGS
from ._defaults import (
    DEFAULT_MAX_DURATION_S,
    DEFAULT_MAX_QUEUE,
    DEFAULT_MAX_UPLOAD_MB,
    DEFAULT_MAX_UPLOADS,
    DEFAULT_MAX_UPLOADS_PER_CLIENT,
    DEFAULT_MAX_UPLOAD_S,
    DEFAULT_MIN_UPLOAD_KBPS,
    DEFAULT_UPLOAD_GRACE_S,
    DEFAULT_WORKERS,
)
from ._upload import RequestError, Upload, receive_upload
from .schemas import ErrorOut, FailureOut, HealthOut, ModelOut, ModelsOut, PredictionOut

if TYPE_CHECKING:
    from ..classifier import GenreClassifier, Prediction

__all__ = ["DEFAULT_MAX_DURATION_S", "DEFAULT_MAX_QUEUE", "DEFAULT_MAX_UPLOAD_MB", "DEFAULT_WORKERS", "create_app"]

_STATIC = Path(__file__).parent / "static"
_UPLOAD_DIR = re.compile(r"genrekit-serve-(\d+)-\w+")  # a server's upload folder in the temp dir: its pid, then mkdtemp's letters
_FORMATS = "WAV, FLAC, OGG, MP3 or AU"
_PAGE_POLICY = "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorOut, "description": text}
    for code, text in {
        400: "The body is not well-formed multipart/form-data, lacks its closing boundary, or the upload was interrupted.",
        413: "The file is larger than the upload limit.",
        401: "The server requires a token (`Authorization: Bearer <token>`) and none or a wrong one was sent.",
        408: "The upload arrived slower than the server's minimum rate, or took longer than its time limit.",
        415: "The body is not multipart, or the file is not audio genrekit can decode.",
        422: "The audio is longer than the duration limit, no file was sent, or a query parameter is invalid.",
        503: "Every worker is busy and the queue is full, or too many uploads are arriving (in all or from your address); retry after the `Retry-After` seconds.",
    }.items()
}


class _Gate:
    """Admission counter shared by the event loop and the worker threads."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.in_flight = 0
        self._lock = threading.Lock()

    def try_enter(self) -> bool:
        with self._lock:
            if self.in_flight >= self.capacity:
                return False
            self.in_flight += 1
            return True

    def leave(self) -> None:
        with self._lock:
            self.in_flight -= 1


class _Service:
    """Limits, the upload directory and the worker pool of one server; both exist only while it runs."""

    def __init__(
        self, model: GenreClassifier, *, max_bytes: int, max_duration_s: float, workers: int, max_queue: int,
        max_uploads: int, max_uploads_per_client: int, upload_grace_s: float, min_upload_rate: float, max_upload_s: float,
    ) -> None:
        self.model = model
        self.max_bytes = max_bytes
        self.max_duration_s = max_duration_s
        self.workers = workers
        self.gate = _Gate(workers + max_queue)  # files that have arrived: running or waiting for a worker
        self.uploads = _Gate(max_uploads)  # bodies still arriving
        self.max_uploads_per_client = max_uploads_per_client
        self._client_uploads: dict[str, int] = {}  # bodies arriving per client address (touched by the event loop only)
        self.upload_grace_s = upload_grace_s
        self.min_upload_rate = min_upload_rate
        self.max_upload_s = max_upload_s
        self.upload_dir: Path | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._mean_seconds = 2.0
        self._timing_lock = threading.Lock()

    def start(self) -> None:
        _remove_dead_servers_uploads(Path(tempfile.gettempdir()))
        self.upload_dir = Path(tempfile.mkdtemp(prefix=f"genrekit-serve-{os.getpid()}-"))
        self._executor = ThreadPoolExecutor(self.workers, thread_name_prefix="genrekit-predict")

    def stop(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
        if self.upload_dir is not None:
            shutil.rmtree(self.upload_dir, ignore_errors=True)

    def retry_after(self) -> int:
        """Seconds until a worker is likely free for one more file: the mean measured service time times
        the files admitted (running and queued) per worker."""
        with self._timing_lock:
            mean = self._mean_seconds
        return max(1, math.ceil(mean * self.gate.in_flight / self.workers))

    def _busy(self, what: str) -> RequestError:
        wait = self.retry_after()
        return RequestError(503, "busy", f"The server is busy with {what}. Please try again in {wait} seconds.", {"Retry-After": str(wait)})

    async def predict(self, request: Request, *, top_k: int, segments: bool, tags: int = DEFAULT_TAGS) -> dict[str, Any]:
        if self._executor is None or self.upload_dir is None:
            raise RuntimeError("the server is not running: use the app inside its lifespan (e.g. `with TestClient(app)`)")
        client = request.client.host if request.client is not None else ""
        if self._client_uploads.get(client, 0) >= self.max_uploads_per_client:
            raise self._busy("other uploads from your address")
        if not self.uploads.try_enter():
            raise self._busy("other uploads")
        self._client_uploads[client] = self._client_uploads.get(client, 0) + 1
        try:
            upload = await receive_upload(
                request, field="file", dest_dir=self.upload_dir, max_bytes=self.max_bytes,
                grace_s=self.upload_grace_s, min_rate=self.min_upload_rate, max_s=self.max_upload_s,
            )
        finally:
            self.uploads.leave()
            self._client_uploads[client] -= 1
            if not self._client_uploads[client]:
                del self._client_uploads[client]
        if not self.gate.try_enter():  # admitted to inference only now that the whole file is here
            upload.path.unlink(missing_ok=True)
            raise self._busy("other songs")
        try:
            job = self._executor.submit(self._classify, upload)
        except BaseException:
            self._finish(upload)
            raise
        job.add_done_callback(lambda _: self._finish(upload))
        prediction = await asyncio.wrap_future(job)
        out = prediction.to_dict(top_k=top_k, segments=segments, tags=tags)
        out["path"] = upload.filename
        return out

    def _finish(self, upload: Upload) -> None:
        """Remove the upload and free its slot once the job has really ended, even if the client left."""
        upload.path.unlink(missing_ok=True)
        self.gate.leave()

    def _classify(self, upload: Upload) -> Prediction:
        """Runs in a worker thread: refuse over-long audio from its header, then decode and classify."""
        started = time.perf_counter()
        declared = declared_duration(upload.path)  # None when the header leaves the length open: decoding decides
        if declared is not None:
            self._check_duration(upload, declared)
        try:
            prediction = self.model.predict(upload.path, max_duration=self.max_duration_s)
        except AudioTooLongError as e:  # a header that understated the length or left it open: refused as it streamed
            raise self._too_long(upload, None, header=declared is not None) from e
        except AudioDecodeError as e:
            failure = PredictionError.from_exception(upload.filename, e)
            raise RequestError(415, "not_audio", _decode_message(failure), failure=failure) from e
        self._check_duration(upload, prediction.duration_s)
        with self._timing_lock:
            self._mean_seconds = 0.8 * self._mean_seconds + 0.2 * (time.perf_counter() - started)
        return prediction

    def _check_duration(self, upload: Upload, seconds: float) -> None:
        if seconds > self.max_duration_s:
            raise self._too_long(upload, seconds)

    def _too_long(self, upload: Upload, seconds: float | None, *, header: bool = True) -> RequestError:
        if seconds is not None:
            length = f"is {_duration_words(seconds)} long"
        else:
            length = "is longer than its header says" if header else "is too long"
        limit = f"this server accepts at most {_duration_words(self.max_duration_s)}"
        return RequestError(
            422,
            "too_long",
            f"“{upload.filename}” {length}; {limit}. Cut it shorter and try again.",
            failure=PredictionError(upload.filename, "too-long", f"{length.removeprefix('is ')}; {limit}"),
        )


def _remove_dead_servers_uploads(temp: Path) -> None:
    """Remove the upload folders (partial uploads) of this user's servers that died without cleaning up
    (kill -9, a crash): a folder names its server's pid, and one whose process is gone serves no one."""
    for folder in temp.glob("genrekit-serve-*"):
        match = _UPLOAD_DIR.fullmatch(folder.name)
        try:
            ours = folder.is_dir() and not folder.is_symlink() and folder.stat().st_uid == os.getuid()
        except OSError:
            continue
        if match is not None and ours and not _alive(int(match.group(1))):
            shutil.rmtree(folder, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _duration_words(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} seconds" if seconds >= 10 else f"{seconds:.1f} seconds"
    return f"{seconds / 60:.1f} minutes"


def _decode_message(failure: PredictionError) -> str:
    """Why the file failed, about the name the user knows: the failure is the upload's, never the server's temp file."""
    reason = failure.error[:1].lower() + failure.error[1:].rstrip(".")
    return f"“{failure.path}” could not be read as audio: {reason}. Please upload a {_FORMATS} file."


def _error_response(error: RequestError) -> JSONResponse:
    return JSONResponse(
        ErrorOut(
            error=error.error, detail=error.detail, failure=None if error.failure is None else FailureOut.model_validate(error.failure.to_dict())
        ).model_dump(exclude_none=True),
        status_code=error.status_code,
        headers=error.headers,
    )


_CREATE_APP_CONSTRAINTS: dict[str, Constraint] = {
    "max_upload_mb": Interval(0, None, closed="neither"),
    "max_duration_s": Interval(0, None, closed="neither"),
    "upload_grace_s": Interval(0, None, closed="neither"),
    "min_upload_kbps": Interval(0, None, closed="neither"),
    "workers": Interval(1, None, integer=True),
    "max_uploads": Interval(1, None, integer=True),
    "max_uploads_per_client": Interval(1, None, integer=True),
    "max_upload_s": Interval(0, None, closed="neither"),
    "max_queue": Interval(0, None, integer=True),
}


def create_app(
    model: GenreClassifier,
    *,
    max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB,
    max_duration_s: float = DEFAULT_MAX_DURATION_S,
    max_queue: int = DEFAULT_MAX_QUEUE,
    workers: int = DEFAULT_WORKERS,
    max_uploads: int = DEFAULT_MAX_UPLOADS,
    max_uploads_per_client: int = DEFAULT_MAX_UPLOADS_PER_CLIENT,
    upload_grace_s: float = DEFAULT_UPLOAD_GRACE_S,
    min_upload_kbps: float = DEFAULT_MIN_UPLOAD_KBPS,
    max_upload_s: float = DEFAULT_MAX_UPLOAD_S,
    token: str | None = None,
) -> FastAPI:
    """Build the FastAPI application that serves ``model``.

    The upload directory and the worker pool are created when the app starts (its lifespan)
    and removed when it stops, so run it under uvicorn or ``with TestClient(app)``.

    Parameters
    ----------
    model : GenreClassifier
        The model every request is answered with (from :func:`genrekit.load_model`).
    max_upload_mb : float > 0, default=50
        Largest accepted file in megabytes (10**6 bytes); larger uploads get 413 as soon as the limit is crossed.
    max_duration_s : float > 0, default=900
        Longest accepted audio in seconds; longer files get 422 before they are decoded whenever their header tells.
    max_queue : int >= 0, default=16
        Requests that may wait for a busy worker; beyond ``workers + max_queue`` requests the answer is 503.
    workers : int > 0, default=1
        Threads that decode and classify in parallel.
    max_uploads : int > 0, default=32
        Uploads that may be arriving at once; beyond that the answer is 503. Uploads do not hold inference slots.
    max_uploads_per_client : int > 0, default=8
        Of those, how many one client address may hold (503 beyond): slow clients from one address cannot take
        every slot. Behind a reverse proxy the address is the proxy's unless it sends ``X-Forwarded-For`` (README).
    upload_grace_s : float > 0, default=10
        Seconds an upload may take before ``min_upload_kbps`` applies.
    min_upload_kbps : float > 0, default=10
        Slowest accepted average upload rate in kB/s after the grace period; slower uploads get 408.
    max_upload_s : float > 0, default=300
        Longest an upload may take in all, however fast it goes (408 beyond): a slot is held for at most this.
    token : str, optional
        When set, ``/v1/`` routes answer 401 unless the request has ``Authorization: Bearer <token>``.

    Returns
    -------
    FastAPI
        Routes ``POST /v1/predict``, ``GET /v1/models``, ``GET /healthz``, the page at ``/`` and the API docs at ``/docs``.

    Examples
    --------
    >>> import uvicorn                                                # doctest: +SKIP
    >>> from genrekit import load_model                               # doctest: +SKIP
    >>> uvicorn.run(create_app(load_model(), workers=2), port=8000)   # doctest: +SKIP
    """
    check_values(locals(), _CREATE_APP_CONSTRAINTS, owner="create_app")
    if token is not None and not token.strip():
        raise ParameterError("The 'token' parameter of create_app must be a non-empty string (or None for no token).")
    service = _Service(
        model, max_bytes=int(max_upload_mb * 1e6), max_duration_s=max_duration_s, workers=workers, max_queue=max_queue,
        max_uploads=max_uploads, max_uploads_per_client=max_uploads_per_client, upload_grace_s=upload_grace_s,
        min_upload_rate=min_upload_kbps * 1000, max_upload_s=max_upload_s,
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        service.start()
        try:
            yield
        finally:
            service.stop()

    app = FastAPIOffline(
        title="genrekit",
        version=__version__,
        description="Music genre classification. Upload a song to `POST /v1/predict`; the page at `/` does it for you.",
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.service = service

    if token is not None:
        expected = f"Bearer {token}".encode()

        @app.middleware("http")
        async def _authorize(request: Request, call_next: Any) -> Any:
            if request.url.path.startswith("/v1/"):
                sent = request.headers.get("authorization", "").encode()
                if not hmac.compare_digest(sent, expected):
                    return _error_response(
                        RequestError(401, "unauthorized", "This server needs a token: send `Authorization: Bearer <token>`.",
                                     {"WWW-Authenticate": "Bearer"})
                    )
            return await call_next(request)

    @app.exception_handler(RequestError)
    async def _refused(_: Request, error: RequestError) -> JSONResponse:
        return _error_response(error)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, error: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'][1:]))}: {e['msg']}" for e in error.errors())
        return _error_response(RequestError(422, "bad_parameter", f"Invalid request parameter ({problems})."))

    @app.post(
        "/v1/predict",
        response_model=PredictionOut,
        response_model_exclude_none=True,
        responses=_ERRORS,
        summary="Classify one uploaded audio file",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "multipart/form-data": {
                        "schema": {
                            "type": "object",
                            "required": ["file"],
                            "properties": {"file": {"type": "string", "format": "binary", "description": f"One {_FORMATS} file."}},
                        }
                    }
                },
            }
        },
    )
    async def predict(
        request: Request,
        top_k: Annotated[int, Query(ge=1, le=1000, description="How many ranked genres to return.")] = 3,
        segments: Annotated[bool, Query(description="Also return the per-segment timeline.")] = False,
        tags: Annotated[int, Query(ge=0, le=100, description="How many of musicnn's tags to return (0: none).")] = DEFAULT_TAGS,
    ) -> dict[str, Any]:
        """The same JSON as `genrekit predict --format json`, with `path` set to the uploaded file's name."""
        return await service.predict(request, top_k=top_k, segments=segments, tags=tags)

    @app.get("/v1/models", response_model=ModelsOut, response_model_exclude_none=True, summary="The served model")
    async def models() -> ModelsOut:
        """Name, labels, features and the training facts recorded in the model (data, split, validation accuracy)."""
        return ModelsOut(models=[ModelOut.model_validate(model.describe())])

    @app.get("/healthz", response_model=HealthOut, summary="Liveness and load")
    async def healthz() -> HealthOut:
        """Answers at once, also while every worker is busy."""
        return HealthOut(
            status="ok", model=model.name, in_flight=service.gate.in_flight, capacity=service.gate.capacity,
            uploading=service.uploads.in_flight, upload_capacity=service.uploads.capacity,
        )

    @app.get("/palette.json", include_in_schema=False)
    async def palette() -> dict[str, str]:
        """Genre colours of the page, the same as the PNGs' (:mod:`genrekit.plots.palette`)."""
        return genre_colors(model.classes_)

    @app.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(_STATIC / "index.html", headers={"Content-Security-Policy": _PAGE_POLICY})

    app.mount("/static", StaticFiles(directory=_STATIC), name="static")
    return app
