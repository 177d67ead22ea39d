"""Stream one multipart file field to a private temp file, enforcing the size limit as bytes arrive.

Starlette's own form parser spools uploads into the system temp directory and reads the whole
body before a handler can look at its size; this parser writes only into the server's 0700
upload directory and stops at the first byte over the limit, so a huge body never lands anywhere.
"""

from __future__ import annotations

import asyncio
import os
import re
import tempfile
from dataclasses import dataclass
from collections.abc import AsyncIterator
from pathlib import Path
from typing import IO

from ..results import PredictionError

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, MultipartState, parse_options_header
from starlette.requests import ClientDisconnect, Request

__all__ = ["RequestError", "Upload", "receive_upload"]

_MULTIPART_OVERHEAD = 64 * 1024
_SUFFIX = re.compile(r"\.[A-Za-z0-9]{1,5}")
_UNSAFE = re.compile(r"[\x00-\x1f\x7f]")


class RequestError(Exception):
    """A request the server refuses, with its HTTP status, a stable code and a plain-words message; ``failure``
    is the uploaded file's failure as data when the file itself was refused (not audio, too long)."""

    def __init__(
        self, status_code: int, error: str, detail: str, headers: dict[str, str] | None = None, *, failure: PredictionError | None = None
    ) -> None:
        super().__init__(detail)
        self.status_code = status_code
        self.error = error
        self.detail = detail
        self.headers = headers or {}
        self.failure = failure


@dataclass(frozen=True)
class Upload:
    """An uploaded file saved under the upload directory; the caller removes ``path``."""

    path: Path
    filename: str
    n_bytes: int


def _too_large(max_bytes: int) -> RequestError:
    return RequestError(
        413,
        "too_large",
        f"The file is larger than the {max_bytes / 1e6:g} MB upload limit. "
        "Send a shorter excerpt or a compressed format such as OGG or MP3.",
    )


def _clean_filename(raw: str) -> str:
    """The last path component of a client-sent name, without control characters, for messages only."""
    name = _UNSAFE.sub("", raw.replace("\\", "/").rsplit("/", 1)[-1]).strip()
    return name[:200] or "upload"


class _FilePartWriter:
    """Callbacks for :class:`MultipartParser` that copy the first part named ``field`` to a new file."""

    def __init__(self, field: str, dest_dir: Path, max_bytes: int) -> None:
        self.field = field
        self.dest_dir = dest_dir
        self.max_bytes = max_bytes
        self.path: Path | None = None
        self.filename = ""
        self.n_bytes = 0
        self._file: IO[bytes] | None = None
        self._writing = False
        self._headers: dict[bytes, bytes] = {}
        self._header_field = b""
        self._header_value = b""

    def callbacks(self) -> dict[str, object]:
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": self._header_field_data,
            "on_header_value": self._header_value_data,
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
        }

    def _part_begin(self) -> None:
        self._headers = {}
        self._writing = False

    def _header_field_data(self, data: bytes, start: int, end: int) -> None:
        self._header_field += data[start:end]

    def _header_value_data(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _header_end(self) -> None:
        self._headers[self._header_field.lower()] = self._header_value
        self._header_field = self._header_value = b""

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        name = options.get(b"name", b"").decode("utf-8", "replace")
        raw_filename = options.get(b"filename")
        if name != self.field or raw_filename is None or self.path is not None:
            return
        self.filename = _clean_filename(raw_filename.decode("utf-8", "replace"))
        suffix = Path(self.filename).suffix
        fd, path = tempfile.mkstemp(dir=self.dest_dir, suffix=suffix.lower() if _SUFFIX.fullmatch(suffix) else "")
        self.path = Path(path)
        self._file = os.fdopen(fd, "wb")
        self._writing = True

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if not self._writing or self._file is None:
            return
        self.n_bytes += end - start
        if self.n_bytes > self.max_bytes:
            raise _too_large(self.max_bytes)
        self._file.write(data[start:end])

    def _part_end(self) -> None:
        if self._writing and self._file is not None:
            self._file.close()
            self._file = None
        self._writing = False

    def close(self) -> None:
        """Close the file once the body has been read to its end."""
        self._part_end()

    def discard(self) -> None:
        """Close and remove the partial file (after an error or a client that went away)."""
        if self._file is not None:
            self._file.close()
            self._file = None
        if self.path is not None:
            self.path.unlink(missing_ok=True)


async def _chunks(request: Request, grace_s: float, min_rate: float, max_s: float) -> AsyncIterator[bytes]:
    """The body's chunks, as long as the client keeps up ``min_rate`` bytes/s on average after ``grace_s`` seconds
    and sends the whole body within ``max_s`` seconds.

    A client trickling a few bytes a second (or sending nothing) would otherwise hold its connection,
    its upload slot and a temp file for as long as it likes; one just above the rate, for as long as the
    size limit divided by the rate (~70 minutes for 50 MB at 12 kB/s).
    """
    loop = asyncio.get_running_loop()
    start = loop.time()
    received = 0
    stream = request.stream().__aiter__()
    while True:
        allowed = min(start + grace_s + received / min_rate, start + max_s) - loop.time()
        try:
            chunk = await asyncio.wait_for(stream.__anext__(), timeout=max(allowed, 0.0))
        except StopAsyncIteration:
            return
        except TimeoutError:
            if loop.time() - start >= max_s:
                why = f"The upload took longer than {max_s:g} s"
            else:
                why = f"The upload was too slow (under {min_rate / 1000:g} kB/s after {grace_s:g} s)"
            raise RequestError(408, "too_slow", f"{why}; the server stopped waiting for it.", {"Connection": "close"}) from None
        received += len(chunk)
        yield chunk


async def receive_upload(
    request: Request, *, field: str, dest_dir: Path, max_bytes: int, grace_s: float = 10.0, min_rate: float = 10_000.0, max_s: float = 300.0
) -> Upload:
    """Read the request body as ``multipart/form-data`` and save the file field ``field`` in ``dest_dir``.

    Raises
    ------
    RequestError
        413 when the file (or the whole body) exceeds the limit, 415 when the body is not multipart,
        400 when it is malformed multipart, ends before its closing boundary, or the client went away
        mid-upload, 408 when it arrives slower than ``min_rate`` bytes/s after ``grace_s`` seconds or takes
        longer than ``max_s`` seconds in all, 422 when
        no file field named ``field`` was sent. Nothing is left in ``dest_dir`` then.
    """
    content_type, params = parse_options_header(request.headers.get("content-type", ""))
    boundary = params.get(b"boundary")
    if content_type != b"multipart/form-data" or not boundary:
        raise RequestError(
            415, "not_multipart", f"Send the audio as multipart/form-data with the file in a field named {field!r}."
        )
    body_limit = max_bytes + _MULTIPART_OVERHEAD
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > body_limit:
        raise _too_large(max_bytes)
    writer = _FilePartWriter(field, dest_dir, max_bytes)
    parser = MultipartParser(boundary, writer.callbacks())  # type: ignore[arg-type]  # its callbacks TypedDict is stricter than the plain dict it reads
    received = 0
    try:
        async for chunk in _chunks(request, grace_s, min_rate, max_s):
            received += len(chunk)
            if received > body_limit:
                raise _too_large(max_bytes)
            parser.write(chunk)
        parser.finalize()
        if parser.state != MultipartState.END and writer.path is not None:
            raise RequestError(
                400, "incomplete", "The upload ended before its closing multipart boundary: the file may be cut short. Send it again."
            )
        if writer.path is None:
            raise RequestError(422, "missing_file", f"No file was sent: upload one audio file in the form field {field!r}.")
        writer.close()
    except ClientDisconnect as e:
        writer.discard()
        raise RequestError(400, "interrupted", "The upload was interrupted before the whole file arrived.") from e
    except MultipartParseError as e:
        writer.discard()
        raise RequestError(400, "bad_multipart", f"The upload could not be read as multipart/form-data ({e}).") from e
    except BaseException:
        writer.discard()
        raise
    return Upload(writer.path, writer.filename, writer.n_bytes)
