"""What a tag must never change: each format's audio payload, as a digest.

``genrekit tag`` checks its tagged copy against the original with these before it replaces anything,
and the tests use them too: MP3 is everything after the ID3v2 tag, FLAC everything after the metadata
blocks, Ogg every packet but the comment header, MP4 the bytes of every sample the sample tables
point at (so chunk offsets that moved with a grown ``moov`` atom must still find the same frames).
"""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path

__all__ = ["PayloadError", "id3v2_size", "payload_digest"]


class PayloadError(ValueError):
    """The file's structure cannot be parsed for its payload."""


def payload_digest(path: Path, kind: str) -> str:
    """SHA-256 of the audio payload of ``path``, a file of ``kind`` ("id3", "flac", "ogg" or "mp4")."""
    h = hashlib.sha256()
    if kind == "ogg":
        for packet in _ogg_packets(path):
            h.update(struct.pack(">Q", len(packet)))
            h.update(packet)
        return h.hexdigest()
    data = path.read_bytes()
    if kind == "id3":
        h.update(data[id3v2_size(data):])
    elif kind == "flac":
        h.update(data[_flac_audio_offset(data):])
    elif kind == "mp4":
        for start, size in _mp4_samples(data):
            h.update(data[start:start + size])
    else:
        raise PayloadError(f"no payload rule for {kind!r}")
    return h.hexdigest()


def id3v2_size(data: bytes) -> int:
    """Bytes taken by the ID3v2 tag at the start (0 without one): header, frames, padding, footer."""
    if len(data) < 10 or data[:3] != b"ID3":
        return 0
    size = 0
    for b in data[6:10]:
        size = (size << 7) | (b & 0x7F)
    footer = 10 if data[5] & 0x10 else 0
    return 10 + size + footer


def _flac_audio_offset(data: bytes) -> int:
    pos = id3v2_size(data)
    if data[pos:pos + 4] != b"fLaC":
        raise PayloadError("not a FLAC stream")
    pos += 4
    while True:
        if pos + 4 > len(data):
            raise PayloadError("FLAC metadata runs past the end of the file")
        header = data[pos]
        length = int.from_bytes(data[pos + 1:pos + 4], "big")
        pos += 4 + length
        if header & 0x80:
            return pos


def _ogg_packets(path: Path) -> list[bytes]:
    """Every packet of the first logical stream except the second (the comment header of Vorbis and Opus)."""
    from mutagen.ogg import OggPage

    pages: list[OggPage] = []
    with open(path, "rb") as f:
        while True:
            try:
                page = OggPage(f)
            except EOFError:
                break
            except Exception as e:  # mutagen raises its own error types for a damaged page
                raise PayloadError(f"unreadable Ogg page: {e}") from e
            if pages and page.serial != pages[0].serial:
                continue
            pages.append(page)
    if not pages:
        raise PayloadError("no Ogg pages")
    packets = OggPage.to_packets(pages, strict=False)
    return [packets[0], *packets[2:]]


def _atoms(data: bytes, start: int, end: int) -> dict[bytes, list[tuple[int, int]]]:
    """Child atoms between ``start`` and ``end``: name -> [(payload start, payload end)]."""
    found: dict[bytes, list[tuple[int, int]]] = {}
    pos = start
    while pos + 8 <= end:
        size, name = struct.unpack(">I4s", data[pos:pos + 8])
        header = 8
        if size == 1:
            size = struct.unpack(">Q", data[pos + 8:pos + 16])[0]
            header = 16
        elif size == 0:
            size = end - pos
        if size < header or pos + size > end:
            raise PayloadError(f"MP4 atom {name!r} runs past its parent")
        found.setdefault(name, []).append((pos + header, pos + size))
        pos += size
    return found


def _mp4_samples(data: bytes) -> list[tuple[int, int]]:
    """(offset, size) of every sample of every track, from stsz, stsc and stco/co64."""
    top = _atoms(data, 0, len(data))
    if b"moov" not in top:
        raise PayloadError("no moov atom")
    moov = _atoms(data, *top[b"moov"][0])
    samples: list[tuple[int, int]] = []
    for trak in moov.get(b"trak", []):
        mdia = _atoms(data, *_atoms(data, *trak)[b"mdia"][0])
        minf = _atoms(data, *mdia[b"minf"][0])
        stbl = _atoms(data, *minf[b"stbl"][0])
        s, _ = stbl[b"stsz"][0]
        uniform, count = struct.unpack(">II", data[s + 4:s + 12])
        sizes = [uniform] * count if uniform else list(struct.unpack(f">{count}I", data[s + 12:s + 12 + 4 * count]))
        if b"co64" in stbl:
            s, _ = stbl[b"co64"][0]
            n = struct.unpack(">I", data[s + 4:s + 8])[0]
            offsets = list(struct.unpack(f">{n}Q", data[s + 8:s + 8 + 8 * n]))
        else:
            s, _ = stbl[b"stco"][0]
            n = struct.unpack(">I", data[s + 4:s + 8])[0]
            offsets = list(struct.unpack(f">{n}I", data[s + 8:s + 8 + 4 * n]))
        s, _ = stbl[b"stsc"][0]
        n = struct.unpack(">I", data[s + 4:s + 8])[0]
        runs = [struct.unpack(">III", data[s + 8 + 12 * i:s + 20 + 12 * i]) for i in range(n)]
        sample = 0
        for r, (first, per_chunk, _desc) in enumerate(runs):
            last = runs[r + 1][0] - 1 if r + 1 < len(runs) else len(offsets)
            for chunk in range(first, last + 1):
                pos = offsets[chunk - 1]
                for _ in range(per_chunk):
                    if sample >= len(sizes):
                        break
                    samples.append((pos, sizes[sample]))
                    pos += sizes[sample]
                    sample += 1
        if any(p + z > len(data) for p, z in samples):
            raise PayloadError("an MP4 sample lies past the end of the file")
    return samples
