"""Decode any audio file to mono float32 at a target rate, and cut it into fixed-length segments."""

from __future__ import annotations

import errno
import math
import os
import re
import stat
import struct
import sys
import tempfile
import threading
import warnings
from contextlib import contextmanager, nullcontext
from fractions import Fraction
from collections.abc import Iterator
from typing import IO, ContextManager
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from .config import AudioConfig
from .exceptions import AudioDecodeError, AudioTooLongError, AudioWarning

__all__ = [
    "AUDIO_EXTENSIONS",
    "MIN_SAMPLE_RATE",
    "MAX_SAMPLE_RATE",
    "is_audio_file",
    "path_problem",
    "load_audio",
    "declared_duration",
    "min_cover_samples",
    "segment_audio",
    "segment_starts",
    "load_segments",
    "too_short",
    "stream_audio",
    "Segmenter",
]

AUDIO_EXTENSIONS = frozenset({".wav", ".au", ".flac", ".ogg", ".mp3"})
_BLOCK_FRAMES = 1 << 16  # frames stream_audio decodes at a time: 0.5 MB of stereo float32; 1.5 s at 44.1 kHz, 8 s at 8 kHz
_BLOCK_OUTPUT = 1 << 18  # most resampled samples one block may give (1 MB of float32), whatever the rate ratio
# Sample rates real recordings use lie between telephone-grade 8 kHz and 768 kHz studio masters; a header
# outside this range is a lie, and decoding it would resample each block to up to ~1e9 samples (a 1.3 MB
# WAV whose header says 1 Hz made a predict grow past 16 GB).
MIN_SAMPLE_RATE = 1_000
MAX_SAMPLE_RATE = 768_000
_READ_ERRORS = (sf.LibsndfileError, RuntimeError, TypeError, ValueError)
# What libsndfile reports as the length of a file whose header leaves it open (SF_COUNT_MAX): legal in FLAC
# (total samples 0) and streams; taken as a length it made a 2 s FLAC "19215358410114.1 minutes long".
_UNKNOWN_FRAMES = 2**63 - 1


# libmpg123 (inside libsndfile) prints "Note: Illegal Audio-MPEG-Header ..." / "Note: Trying to resync..."
# straight to file descriptor 2 for damaged MP3 data; nothing in its Python binding turns that off.
_MPG123_LINE = re.compile(rb"^(Note|Warning): |^\[src/libmpg123/")
_stderr_lock = threading.Lock()
_stderr_users = 0
_stderr_saved = -1
_stderr_capture: IO[bytes] | None = None


@contextmanager
def _mpg123_quiet() -> Iterator[None]:
    """Capture file descriptor 2 while libmpg123 runs, then write back every line that is not its chatter.

    Reference-counted, so decoding threads (the service's workers) can overlap: the first one in
    redirects, the last one out restores and replays what others wrote meanwhile.
    """
    global _stderr_users, _stderr_saved, _stderr_capture
    with _stderr_lock:
        if _stderr_users == 0:
            sys.stderr.flush()
            _stderr_capture = tempfile.TemporaryFile()
            _stderr_saved = os.dup(2)
            os.dup2(_stderr_capture.fileno(), 2)
        _stderr_users += 1
    try:
        yield
    finally:
        with _stderr_lock:
            _stderr_users -= 1
            if _stderr_users == 0 and _stderr_capture is not None:
                sys.stderr.flush()
                os.dup2(_stderr_saved, 2)
                os.close(_stderr_saved)
                _stderr_capture.seek(0)
                kept = [line for line in _stderr_capture.read().splitlines(keepends=True) if not _MPG123_LINE.match(line)]
                _stderr_capture.close()
                _stderr_capture = None
                if kept:
                    os.write(2, b"".join(kept))


def _is_mp3(path: Path) -> bool:
    """True for a file named .mp3 or one whose first bytes say MP3 (an ID3 tag or an MPEG audio frame's sync
    bits): libsndfile decodes MP3 data under any name, and the web service's uploads keep whatever name
    the client sent, or none."""
    if path.suffix.lower() == ".mp3":
        return True
    try:
        with open(path, "rb") as f:
            head = f.read(3)
    except OSError:  # decoding says why, in its own words
        return False
    return head == b"ID3" or (len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0)


def _quiet_if(mp3: bool) -> ContextManager[None]:
    return _mpg123_quiet() if mp3 else nullcontext()


def is_audio_file(path: Path) -> bool:
    """True for a visible file with a supported extension (case-insensitive); macOS ``._*`` stubs are not audio."""
    return path.suffix.lower() in AUDIO_EXTENSIONS and not path.name.startswith(".")


def _header_data_bytes(path: Path) -> tuple[int, int] | None:
    """(bytes of audio the header declares, bytes actually present) for RIFF WAV and Sun AU files.

    libsndfile silently clamps a truncated file's length to what is there, so truncation is only
    visible by reading the header. ``None`` for other formats or headers without a usable size.
    """
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(12)
        if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
            offset = 12
            while offset + 8 <= size:
                f.seek(offset)
                chunk_id, chunk_size = struct.unpack("<4sI", f.read(8))
                if chunk_id == b"data":
                    available = size - offset - 8
                    return None if chunk_size in (0, 0xFFFFFFFF) else (chunk_size, available)
                offset += 8 + chunk_size + (chunk_size & 1)
        elif head[:4] == b".snd" and len(head) == 12:
            data_offset, data_size = struct.unpack(">II", head[4:12])
            return None if data_size in (0, 0xFFFFFFFF) else (data_size, size - data_offset)
    return None


def _decode_reason(error: Exception) -> str:
    """libsndfile's reason, minus its misleading "does not exist" for files it merely cannot parse."""
    detail = getattr(error, "error_string", "") or str(error)
    if "does not exist" in detail:
        return "format not recognised or corrupt data"
    return detail.rstrip(".")


def path_problem(path: Path) -> str | None:
    """Why ``path`` cannot be read as a file, in words ("permission denied", "symbolic link loop", ...), or None."""
    try:
        info = path.stat()
    except OSError as e:
        if e.errno == errno.ELOOP:
            return "symbolic link loop"
        if path.is_symlink():
            return f"broken symbolic link (to {os.readlink(path)})"
        if e.errno == errno.EACCES:
            return "permission denied"
        return "no such file"
    if stat.S_ISDIR(info.st_mode):
        return "a folder, not an audio file"
    if not stat.S_ISREG(info.st_mode):
        return "not a regular file"
    if not os.access(path, os.R_OK):
        return "permission denied"
    return None


def _check_file(path: Path) -> None:
    problem = path_problem(path)
    if problem is not None:
        raise AudioDecodeError(path, problem)
    if path.stat().st_size == 0:
        raise AudioDecodeError(path, "empty file (0 bytes)")


def _check_rate(path: Path, native_rate: int) -> None:
    if not MIN_SAMPLE_RATE <= native_rate <= MAX_SAMPLE_RATE:
        raise AudioDecodeError(
            path,
            f"implausible sample rate {native_rate} Hz in the header "
            f"(real audio uses {MIN_SAMPLE_RATE:,} to {MAX_SAMPLE_RATE:,} Hz); the file is corrupt or crafted"
        )


def _declared_frames(f: sf.SoundFile) -> int | None:
    """The length in frames the header declares; ``None`` when it leaves the length open: decoding then tells."""
    return None if f.frames >= _UNKNOWN_FRAMES else f.frames


def declared_duration(path: str | Path) -> float | None:
    """Seconds of audio ``path``'s header declares, to refuse a long file before decoding it; ``None`` when the
    header leaves the length open or cannot be read (only decoding can tell then)."""
    try:
        with _quiet_if(_is_mp3(Path(path))), sf.SoundFile(path) as f:
            frames, rate = _declared_frames(f), f.samplerate
    except _READ_ERRORS:
        return None
    return None if frames is None or rate <= 0 else frames / rate


def _check_length(path: Path, n_frames: int | None, native_rate: int, max_duration: float | None) -> None:
    """Refuse audio longer than ``max_duration`` seconds: from the header before decoding (when it tells), and again as frames arrive."""
    if max_duration is not None and n_frames is not None and n_frames > max_duration * native_rate:
        raise AudioTooLongError(
            path, f"too long ({n_frames / native_rate:.1f} s); the limit is {max_duration:g} s (max_duration)"
        )


def _read_frames(f: sf.SoundFile, frames: int) -> np.ndarray:
    """Up to ``frames`` frames as float32 of shape (n, channels); 16-bit PCM is read as int16 and scaled by
    numpy: the same values as libsndfile's float conversion (x / 32768, exact), ~3x faster."""
    if f.subtype == "PCM_16":
        return np.multiply(f.read(frames, dtype="int16", always_2d=True), np.float32(1 / 32768), dtype=np.float32)
    return f.read(frames, dtype="float32", always_2d=True)


def _warn_if_truncated(path: Path, n_frames: int, declared: int | None, native_rate: int, *, stacklevel: int) -> None:
    """Warn when the file held fewer than the ``declared`` frames, or its RIFF/AU header promises more bytes than exist."""
    seconds = n_frames / native_rate
    promised = seconds * declared / n_frames if declared is not None and declared > n_frames else seconds
    header = _header_data_bytes(path)
    if header is not None and header[1] > 0:
        promised = max(promised, seconds * header[0] / header[1])
    if promised > 1.01 * seconds:
        warnings.warn(
            AudioWarning(path, f"truncated, header promises {promised:.2f} s but only {seconds:.2f} s could be read"),
            stacklevel=stacklevel + 1,
        )


class _ForwardSoundFile(sf.SoundFile):
    """A SoundFile read front to back in blocks without seeking.

    ``SoundFile.read`` seeks to the position it has just reached after every call; with MP3 files
    libsndfile (1.2.2) then re-seeks the decoder, which garbles the samples after each block boundary
    (by up to 0.4 in a tone, or silence for the rest of a 22.05 kHz file). Reporting the file as not
    seekable skips those seeks, and blocks then concatenate to exactly the samples of one whole read.
    """

    def seekable(self) -> bool:
        return False


def load_audio(path: str | Path, *, sample_rate: int, max_duration: float | None = None) -> np.ndarray:
    """Decode ``path`` to a mono float32 signal at ``sample_rate``.

    Channels are averaged; other rates are resampled with soxr (high quality, as librosa does).
    :func:`stream_audio` gives the same samples block by block, in memory independent of the length.

    Parameters
    ----------
    max_duration : float > 0, optional
        Refuse files longer than this many seconds (checked from the header before decoding).

    Raises
    ------
    AudioDecodeError
        The file is missing, unreadable, empty, not audio, has an implausible sample rate (outside
        ``MIN_SAMPLE_RATE`` to ``MAX_SAMPLE_RATE``), or holds non-finite samples;
        :class:`~genrekit.exceptions.AudioTooLongError` when it is longer than ``max_duration``.

    Warns
    -----
    AudioWarning
        The file is shorter than its header says (truncated).
    """
    path = Path(path)
    _check_file(path)
    try:
        with _quiet_if(_is_mp3(path)), sf.SoundFile(os.fsencode(path)) as f:  # bytes: soundfile cannot encode a name that is not UTF-8
            declared = _declared_frames(f)
            native_rate = f.samplerate
            integer = f.subtype == "PCM_16"
            _check_rate(path, native_rate)
            _check_length(path, declared, native_rate, max_duration)
            data = _read_frames(f, -1) if declared is not None else None
    except AudioDecodeError:
        raise
    except _READ_ERRORS as e:
        raise AudioDecodeError(path, "not decodable audio", detail=_decode_reason(e)) from e
    if data is None:  # the header leaves the length open: reading "all" frames would allocate SF_COUNT_MAX of them
        return np.concatenate(list(stream_audio(path, sample_rate=sample_rate, max_duration=max_duration)))
    if data.size == 0:
        raise AudioDecodeError(path, "contains no audio samples")
    _check_length(path, len(data), native_rate, max_duration)
    if not integer and not np.isfinite(data).all():
        raise AudioDecodeError(path, "contains NaN or infinite samples")
    _warn_if_truncated(path, len(data), declared, native_rate, stacklevel=2)
    mono = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    if native_rate != sample_rate:
        mono = soxr.resample(mono, native_rate, sample_rate, quality="HQ")
    return np.ascontiguousarray(mono, dtype=np.float32)


def stream_audio(
    path: str | Path, *, sample_rate: int, block_frames: int = _BLOCK_FRAMES, max_duration: float | None = None
) -> Iterator[np.ndarray]:
    """Decode ``path`` block by block: the mono float32 signal of :func:`load_audio`, in consecutive pieces.

    Each block of ``block_frames`` frames is averaged over channels and fed to a streaming soxr resampler,
    whose output is bit-identical to one-shot ``soxr.resample``; so concatenating the blocks gives exactly
    :func:`load_audio`'s array, while memory stays that of one block however long the file is.
    Blocks can be empty (the resampler's delay); the last one flushes the resampler. Fewer frames are read
    per block when upsampling, so that no block gives more than ``_BLOCK_OUTPUT`` samples.

    Raises
    ------
    AudioDecodeError
        As :func:`load_audio`; problems found mid-file (bad data, non-finite samples, more audio than
        ``max_duration`` where the header understated it) raise when reached.

    Warns
    -----
    AudioWarning
        After the last block, when the file is shorter than its header says (truncated).
    """
    path = Path(path)
    _check_file(path)
    mp3 = _is_mp3(path)
    try:
        with _quiet_if(mp3):
            f = _ForwardSoundFile(os.fsencode(path))  # bytes, as in load_audio
    except _READ_ERRORS as e:
        raise AudioDecodeError(path, "not decodable audio", detail=_decode_reason(e)) from e
    with f:
        declared, native_rate, integer = _declared_frames(f), f.samplerate, f.subtype == "PCM_16"
        _check_rate(path, native_rate)
        _check_length(path, declared, native_rate, max_duration)
        block_frames = max(1, min(block_frames, _BLOCK_OUTPUT * native_rate // sample_rate))
        resampler = None if native_rate == sample_rate else soxr.ResampleStream(native_rate, sample_rate, 1, dtype="float32", quality="HQ")
        n_frames = 0
        while True:
            try:
                with _quiet_if(mp3):
                    data = _read_frames(f, block_frames)
            except _READ_ERRORS as e:
                raise AudioDecodeError(path, "not decodable audio", detail=_decode_reason(e)) from e
            if len(data) == 0:
                break
            if not integer and not np.isfinite(data).all():
                raise AudioDecodeError(path, "contains NaN or infinite samples")
            n_frames += len(data)
            _check_length(path, n_frames, native_rate, max_duration)
            mono = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
            if resampler is not None:
                mono = resampler.resample_chunk(np.ascontiguousarray(mono))
            yield np.ascontiguousarray(mono, dtype=np.float32)
    if n_frames == 0:
        raise AudioDecodeError(path, "contains no audio samples")
    _warn_if_truncated(path, n_frames, declared, native_rate, stacklevel=2)
    if resampler is not None:
        yield resampler.resample_chunk(np.zeros(0, dtype=np.float32), last=True)


def min_cover_samples(config: AudioConfig) -> int:
    """Fewest samples a final partial window must cover to be kept: ``ceil(min_last_fraction * segment_samples)``.

    Computed exactly (59535 for 3 s at 22050 Hz and 0.9), so the rule has no float rounding edge.
    """
    return math.ceil(Fraction(str(config.min_last_fraction)) * config.segment_samples)


def segment_starts(n_samples: int, config: AudioConfig) -> np.ndarray:
    """Start sample of every kept window.

    Windows start every ``hop_samples``. A window is kept when it covers at least
    :func:`min_cover_samples` of audio (full windows always are; a final partial one is zero-padded),
    so the count is ``(n_samples - min_cover) // hop_samples + 1``: 10 for 29.98 s and 30 s, 31 for
    95 s with the defaults. Audio shorter than ``min_cover`` still gives one (padded) window at 0.
    """
    hop = config.hop_samples
    min_cover = min_cover_samples(config)
    if n_samples < min_cover:
        return np.zeros(1, dtype=np.int64)
    n = (n_samples - min_cover) // hop + 1
    return np.arange(n, dtype=np.int64) * hop


def segment_audio(y: np.ndarray, config: AudioConfig) -> tuple[np.ndarray, np.ndarray]:
    """Cut ``y`` into windows of ``segment_samples``, zero-padding the last one.

    Returns
    -------
    segments : ndarray of shape (n_segments, segment_samples)
    starts : ndarray of shape (n_segments,)
        Start time of each segment in seconds.
    """
    win = config.segment_samples
    starts = segment_starts(len(y), config)
    needed = int(starts[-1]) + win
    padded = np.pad(y, (0, needed - len(y))) if needed > len(y) else y
    # Windows start every hop_samples: a strided view of the signal, copied once into the result.
    windows = np.lib.stride_tricks.sliding_window_view(padded, win)[:: config.hop_samples][: len(starts)]
    return windows.astype(np.float32, order="C"), starts / config.sample_rate  # astype always copies


def too_short(duration: float, config: AudioConfig) -> str:
    """The reason audio of ``duration`` seconds is refused, or ``""`` when it is long enough."""
    if duration >= config.min_duration:
        return ""
    return f"too short ({duration:.3f} s); at least {config.min_duration:g} s of audio is needed"


def load_segments(path: str | Path, config: AudioConfig, *, max_duration: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Decode ``path`` and segment it; see :func:`load_audio` and :func:`segment_audio`.

    Raises
    ------
    AudioDecodeError
        Also when the audio is shorter than ``config.min_duration``.
    """
    y = load_audio(path, sample_rate=config.sample_rate, max_duration=max_duration)
    duration = len(y) / config.sample_rate
    if reason := too_short(duration, config):
        raise AudioDecodeError(path, reason)
    if len(y) < min_cover_samples(config):
        warnings.warn(
            AudioWarning(path, f"{duration:.2f} s is shorter than one {config.segment_seconds:g} s segment; zero-padded"),
            stacklevel=2,
        )
    return segment_audio(y, config)


class Segmenter:
    """Cut a signal that arrives in blocks into exactly the windows :func:`segment_audio` cuts from it whole.

    Full windows are returned as soon as their last sample arrives; :meth:`finish` applies the rule of
    :func:`segment_starts` for the final partial window(s), which needs the total length. Only samples of
    windows not yet returned are held (under one window plus one block), so memory does not grow with the
    signal's length.

    Examples
    --------
    >>> seg = Segmenter(AudioConfig(sample_rate=10, segment_seconds=1.0, min_last_fraction=0.5))
    >>> [len(seg.push(np.ones(n, dtype=np.float32))) for n in (4, 12, 3)]
    [0, 1, 0]
    >>> seg.finish().shape, seg.n_samples, seg.n_segments
    ((1, 10), 19, 2)
    """

    def __init__(self, config: AudioConfig) -> None:
        self.config = config
        self.n_samples = 0  # pushed so far
        self.n_segments = 0  # returned so far; segment k starts at sample k * hop_samples
        self._pending = np.zeros(0, dtype=np.float32)  # samples from self._offset on
        self._offset = 0

    def push(self, block: np.ndarray) -> np.ndarray:
        """Append ``block``; returns the windows it completed, shape (n, segment_samples)."""
        self._pending = np.concatenate([self._pending, np.asarray(block, dtype=np.float32)])
        self.n_samples += len(block)
        win, hop = self.config.segment_samples, self.config.hop_samples
        n_full = (self.n_samples - win) // hop + 1 if self.n_samples >= win else 0
        return self._take(n_full)

    def finish(self) -> np.ndarray:
        """The windows still due once the signal has ended: partial ones kept by the rule, zero-padded."""
        return self._take(len(segment_starts(self.n_samples, self.config)))

    def _take(self, n_total: int) -> np.ndarray:
        """Windows ``n_segments`` to ``n_total`` (zero-padded past the end); drops samples no later window needs."""
        win, hop = self.config.segment_samples, self.config.hop_samples
        first = self.n_segments * hop - self._offset  # in self._pending
        count = max(n_total - self.n_segments, 0)
        out = np.zeros((count, win), dtype=np.float32)
        for i in range(count):
            piece = self._pending[first + i * hop : first + i * hop + win]
            out[i, : len(piece)] = piece
        self.n_segments += count
        drop = min(self.n_segments * hop - self._offset, len(self._pending))
        self._pending = self._pending[drop:]
        self._offset += drop
        return out
