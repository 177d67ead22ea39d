"""Helpers for the organize tests: results files written by genrekit's own writer, and tagged audio of every format.

MP3, Ogg Vorbis, Opus and FLAC come from soundfile (libsndfile >= 1.1 writes MP3 and Opus). Nothing here
encodes AAC (no ffmpeg), so the M4A is built by hand: a valid MP4 container (ftyp, moov with one AAC
track and its sample tables, mdat) whose samples are arbitrary bytes. mutagen tags it like any M4A, and
what tagging must preserve in an MP4, the bytes each sample-table entry points at, is checked exactly.
"""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from genrekit.library.formats import ResultsFile, result_columns

LABELS = ["blues", "classical", "country", "disco", "hiphop", "jazz", "metal", "pop", "reggae", "rock"]
SAMPLE_RATE = 22050


def result(path: Path | str, genre: str | None, confidence: float = 0.9, *, uncertain: bool = False, error: str | None = None,
           error_kind: str = "decode", content_hash: str | None = None, duration: float = 2.0, labels: list[str] = LABELS) -> dict[str, Any]:
    """One results row as ``genrekit predict`` writes it: the other genres share what the top genre leaves."""
    from genrekit.datasets.discover import file_hash

    row: dict[str, Any] = dict.fromkeys(result_columns(labels))
    row["path"] = str(path)
    if content_hash is None and Path(path).is_file():
        content_hash = file_hash(Path(path))
    row["content_hash"] = content_hash
    if error is not None or genre is None:
        row.update(error=error or "could not be decoded", error_kind=error_kind)
        return row
    rest = [g for g in labels if g != genre]
    probs = dict.fromkeys(rest, (1.0 - confidence) / len(rest))
    probs[genre] = confidence
    probs[rest[0]] += 0.01  # a clear runner-up
    probs[rest[1]] -= 0.01
    row.update(genre=genre, confidence=confidence, uncertain=uncertain, duration_s=duration)
    row.update({f"p_{g}": probs[g] for g in labels})
    return row


def write_results(path: Path, rows: list[dict[str, Any]], labels: list[str] = LABELS) -> Path:
    """A results file in any of the three formats, through the library run's own writer."""
    results = ResultsFile(path, labels)
    for row in rows:
        results.add(row)
    results.finish()
    return path


def tone(seconds: float = 1.0, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def write_audio(path: Path, seconds: float = 1.0, freq: float = 440.0) -> Path:
    """An audio file of the kind its extension names (.mp3, .ogg, .opus, .flac, .m4a, .wav)."""
    suffix = path.suffix.lower()
    if suffix == ".m4a":
        return write_m4a(path, seconds=seconds, seed=int(freq))
    if suffix == ".opus":
        sf.write(path, tone(seconds, freq), 48000, format="OGG", subtype="OPUS")
    else:
        sf.write(path, tone(seconds, freq), SAMPLE_RATE)
    return path


def _atom(name: bytes, *children: bytes) -> bytes:
    body = b"".join(children)
    return struct.pack(">I4s", 8 + len(body), name) + body


def _full(name: bytes, body: bytes, version: int = 0, flags: int = 0) -> bytes:
    return _atom(name, struct.pack(">I", (version << 24) | flags) + body)


def _descriptor(tag: int, body: bytes) -> bytes:
    return bytes([tag, len(body)]) + body


def write_m4a(path: Path, *, seconds: float = 1.0, seed: int = 0) -> Path:
    """A minimal valid M4A: one AAC-LC mono track, ``moov`` before ``mdat`` (so a tag that grows ``moov``
    moves the samples and the chunk offsets must follow), samples of random bytes in chunks of 5."""
    rng = np.random.default_rng(seed)
    n = max(5, int(seconds * SAMPLE_RATE / 1024))
    sizes = [int(s) for s in rng.integers(60, 200, n)]
    samples = [rng.integers(0, 256, s, dtype=np.uint8).tobytes() for s in sizes]
    per_chunk = 5
    n_chunks = (n + per_chunk - 1) // per_chunk
    esds = _full(b"esds", _descriptor(0x03, struct.pack(">HB", 1, 0) + _descriptor(0x04, bytes([0x40, 0x15]) + b"\x00\x00\x00" + struct.pack(">II", 128000, 64000)
                                                                                   + _descriptor(0x05, b"\x13\x88")) + _descriptor(0x06, b"\x02")))
    mp4a = _atom(b"mp4a", b"\x00" * 6 + struct.pack(">H", 1) + b"\x00" * 8 + struct.pack(">HHHH", 1, 16, 0, 0) + struct.pack(">I", SAMPLE_RATE << 16), esds)
    duration = n * 1024

    def stbl(chunk_offsets: list[int]) -> bytes:
        return _atom(
            b"stbl",
            _full(b"stsd", struct.pack(">I", 1) + mp4a),
            _full(b"stts", struct.pack(">III", 1, n, 1024)),
            _full(b"stsc", struct.pack(">IIII", 1, 1, per_chunk, 1)),
            _full(b"stsz", struct.pack(">II", 0, n) + b"".join(struct.pack(">I", s) for s in sizes)),
            _full(b"stco", struct.pack(">I", n_chunks) + b"".join(struct.pack(">I", o) for o in chunk_offsets)),
        )

    def moov(chunk_offsets: list[int]) -> bytes:
        matrix = struct.pack(">9I", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)
        return _atom(
            b"moov",
            _full(b"mvhd", struct.pack(">IIII", 0, 0, SAMPLE_RATE, duration) + struct.pack(">IH", 0x10000, 0x100) + b"\x00" * 10 + matrix + b"\x00" * 24 + struct.pack(">I", 2)),
            _atom(
                b"trak",
                _full(b"tkhd", struct.pack(">IIIII", 0, 0, 1, 0, duration) + b"\x00" * 8 + struct.pack(">HHHH", 0, 0, 0x100, 0) + matrix + struct.pack(">II", 0, 0), flags=7),
                _atom(
                    b"mdia",
                    _full(b"mdhd", struct.pack(">IIII", 0, 0, SAMPLE_RATE, duration) + struct.pack(">HH", 0x55C4, 0)),
                    _full(b"hdlr", struct.pack(">I4s", 0, b"soun") + b"\x00" * 12 + b"SoundHandler\x00"),
                    _atom(b"minf", _full(b"smhd", b"\x00" * 4), _atom(b"dinf", _full(b"dref", struct.pack(">I", 1) + _full(b"url ", b"", flags=1))), stbl(chunk_offsets)),
                ),
            ),
        )

    ftyp = _atom(b"ftyp", b"M4A " + struct.pack(">I", 0) + b"M4A isommp42")
    head = len(ftyp) + len(moov([0] * n_chunks)) + 8  # where the first sample lands: after mdat's header
    offsets, pos = [], head
    for c in range(n_chunks):
        offsets.append(pos)
        pos += sum(sizes[c * per_chunk:(c + 1) * per_chunk])
    path.write_bytes(ftyp + moov(offsets) + _atom(b"mdat", *samples))
    return path


def audio_digest(path: Path) -> tuple[str, str]:
    """(digest of the decoded samples, digest of the audio payload): what a tag must not change."""
    from genrekit.organize._payload import payload_digest
    from genrekit.organize.tagging import KINDS

    kind = KINDS[path.suffix.lower()]
    if kind == "mp4":
        decoded = "no AAC decoder here: the sample bytes are the payload"
    else:
        data, rate = sf.read(path, dtype="float32", always_2d=True)
        decoded = hashlib.sha256(data.tobytes() + struct.pack(">I", rate)).hexdigest()
    return decoded, payload_digest(path, kind)


def genre_field(path: Path) -> list[str] | None:
    """The file's genre as stored, read with mutagen directly (not through genrekit)."""
    import mutagen
    from mutagen.id3 import ID3, ID3NoHeaderError

    if path.suffix.lower() == ".mp3":
        try:
            tags = ID3(path, translate=False, load_v1=False)
        except ID3NoHeaderError:
            return None
        return [t for f in tags.getall("TCON") for t in f.text] or None
    audio = mutagen.File(path)
    if audio is None or audio.tags is None:
        return None
    key = "©gen" if path.suffix.lower() == ".m4a" else "genre"
    return list(audio.tags[key]) if key in audio.tags else None
