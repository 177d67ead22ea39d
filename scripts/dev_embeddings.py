"""musicnn embeddings of every real dev clip, excerpt and short crop: the data of model selection.

One table of segments, cached in one ``.npz`` (recomputed only when missing), that
``scripts/select_default_model.py`` and ``scripts/train_default_model.py`` read:

- **clips**: every clip of ``gtzan-dev`` cut into 3 s segments every **1.5 s** (19 for a 30 s clip).
  The even-numbered ones are the 3 s grid that ``predict`` uses by default, so one pass serves both the
  selection and the question whether overlapping windows help.
- **excerpts**: every 2-3 s excerpt of ``gtzan-dev-excerpts``, one zero-padded segment each.
- **crops**: ``N_CROPS`` random 2-3 s crops of every clip, peak-normalized and zero-padded exactly like
  the excerpts. The excerpts exist only for the six scarce genres and are peak-normalized; without
  crops of *every* genre, "short, padded and loud" would be a cue for those six genres.

Each row keeps its track id, genre, artist (Sturm's GTZAN index; a blank artist becomes its own group),
kind and start time. Crops draw their length and position from a generator seeded by the track id.

    .venv/bin/python scripts/dev_embeddings.py --out runs/selection/embeddings.npz [--jobs 2]
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

SHARED = Path(os.environ.get("GENREKIT_SHARED_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))
CLIPS = SHARED / "gtzan-dev"
EXCERPTS = SHARED / "gtzan-dev-excerpts"
INDEX = SHARED / "gtzan-splits" / "GTZANindex.txt"
N_CROPS = 3
CROP_SECONDS = (2.0, 3.0)
CLIP_HOP_SECONDS = 1.5


def artists(index: Path = INDEX) -> dict[str, str]:
    """GTZAN track id -> artist from Sturm's index; a blank artist is its track's own group."""
    out: dict[str, str] = {}
    for line in index.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.startswith("#") or ":::" not in line:
            continue
        name, artist, *_ = (part.strip() for part in line.split(":::"))
        track = name.removesuffix(".wav")
        out[track] = artist.lower() or f"(unknown: {track})"
    return out


def manifest(root: Path) -> list[tuple[str, str, Path]]:
    with open(root / "MANIFEST.csv", newline="") as f:
        return [(row["track_id"], row["genre"], root / row["path"]) for row in csv.DictReader(f)]


def _peak_normalize(y: np.ndarray) -> np.ndarray:
    peak = float(np.abs(y).max())
    return y / peak if peak > 0 else y


def _embed_file(job: tuple[str, str, str]) -> dict[str, np.ndarray]:
    """Embeddings of one file's segments (and crops, for a clip); runs in a worker."""
    import torch

    from genrekit.features import musicnn
    from genrekit.audio import load_audio, segment_audio
    from genrekit.config import AudioConfig

    torch.set_num_threads(1)
    track_id, kind, path = job
    rate = musicnn.SAMPLE_RATE
    y = load_audio(path, sample_rate=rate)
    if kind == "excerpt":
        audio = AudioConfig(sample_rate=rate)
        segments, starts = segment_audio(y, audio)
        kinds = ["excerpt"] * len(segments)
    else:
        audio = AudioConfig(sample_rate=rate, hop_seconds=CLIP_HOP_SECONDS)
        segments, starts = segment_audio(y, audio)
        rng = np.random.default_rng(int(hashlib.sha256(track_id.encode()).hexdigest()[:16], 16))
        crops, crop_starts = [], []
        for _ in range(N_CROPS):
            n = int(rng.uniform(*CROP_SECONDS) * rate)
            lo = int(rng.integers(0, len(y) - n))
            crops.append(segment_audio(_peak_normalize(y[lo : lo + n]), AudioConfig(sample_rate=rate))[0][0])
            crop_starts.append(lo / rate)
        segments = np.concatenate([segments, np.stack(crops)])
        starts = np.concatenate([starts, crop_starts])
        kinds = ["clip"] * (len(segments) - N_CROPS) + ["crop"] * N_CROPS
    emb = musicnn.extract_embeddings(segments, musicnn.default_feature_config(audio=audio))
    return {"emb": emb, "start_s": np.asarray(starts, dtype=np.float32), "kind": np.array(kinds)}


def build(out: Path, *, jobs: int) -> None:
    who = artists()
    jobs_list = [(t, "clip", str(p)) for t, _, p in manifest(CLIPS)] + [(t, "excerpt", str(p)) for t, _, p in manifest(EXCERPTS)]
    genre = {t: g for t, g, _ in manifest(CLIPS) + manifest(EXCERPTS)}
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("emb", "start_s", "kind", "track_id", "genre", "artist")}
    start = time.perf_counter()
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        for i, ((track_id, _, _), result) in enumerate(zip(jobs_list, pool.map(_embed_file, jobs_list, chunksize=4)), 1):
            n = len(result["emb"])
            for key in ("emb", "start_s", "kind"):
                parts[key].append(result[key])
            parts["track_id"].append(np.array([track_id] * n))
            parts["genre"].append(np.array([genre[track_id]] * n))
            parts["artist"].append(np.array([who[track_id]] * n))
            if i % 25 == 0 or i == len(jobs_list):
                print(f"{i}/{len(jobs_list)} files, {time.perf_counter() - start:.0f} s", flush=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp.npz")
    np.savez(tmp, **{k: np.concatenate(v) for k, v in parts.items()})
    tmp.replace(out)
    print(f"wrote {out}")


def load(path: Path) -> dict[str, np.ndarray]:
    """The cached table, built first when missing."""
    if not path.exists():
        build(path, jobs=os.cpu_count() or 1)
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/selection/embeddings.npz"))
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    build(args.out, jobs=args.jobs)


if __name__ == "__main__":
    main()
