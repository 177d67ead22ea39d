"""Zero-shot genre baseline: pick the GTZAN genre whose musicnn tag scores highest, with no training.

Tag -> genre mapping (a genre gets a tag only where the tag vocabulary has it):

============  =====================  ==========================================================
GTZAN genre   tag                    model
============  =====================  ==========================================================
blues         ``blues``              MSD_musicnn (Last.fm top-50)
classical     ``classical``          MTT_musicnn (MagnaTagATune; the MSD tags have no classical)
country       ``country``            MSD_musicnn
disco         --                     no disco tag in either vocabulary
hiphop        ``Hip-Hop``            MSD_musicnn
jazz          ``jazz``               MSD_musicnn
metal         ``metal``              MSD_musicnn
pop           ``pop``                MSD_musicnn
reggae        --                     no reggae tag in either vocabulary
rock          ``rock``               MSD_musicnn
============  =====================  ==========================================================

Each clip is decoded to 16 kHz and tagged as the original musicnn does (consecutive 3 s patches of the
whole clip, :func:`genrekit.features.musicnn.tag_scores`); a genre's score is its tag's score averaged over the
patches, and the prediction is the highest-scoring mapped genre. Disco and reggae clips can never be
right, so the report gives accuracy over all clips and over the clips of mapped genres, per-genre
recall, the confusion matrix, and, where the clips carry GTZAN ids, accuracy on the fault-filtered
validation tracks (the split the trained models are compared on). Any labeled folder works: clips of
labels outside GTZAN's ten count as always wrong, like disco and reggae. Scores of different tags are not calibrated against each other (MTT's
``classical`` especially): that is part of what the baseline measures.

    .venv/bin/python scripts/zero_shot_musicnn.py ../shared/data/gtzan-dev --out reports/zero_shot_musicnn.md

Also writes the per-clip genre scores next to the report (``zero_shot_musicnn.csv``).
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from genrekit.features import musicnn
from genrekit.audio import load_audio
from genrekit.datasets.discover import discover
from genrekit.exceptions import GenrekitError, ParameterError
from genrekit.models.musicnn_linear import ZERO_SHOT_TAGS
from genrekit.datasets.splits import SplitConfig, make_split

# (model, tag) per genre: the mapping the shipped zero-shot model uses (genrekit.models.musicnn_linear).
GENRE_TAGS: dict[str, tuple[str, str] | None] = {
    genre: (tag.split(":")[0], tag.split(":")[1]) if tag else None for genre, tag in ZERO_SHOT_TAGS.items()
}


def genre_scores(path: Path) -> dict[str, float]:
    """Patch-averaged score of each mapped genre's tag for one clip."""
    audio = load_audio(path, sample_rate=musicnn.SAMPLE_RATE)
    means = {model: musicnn.tag_scores(audio, model=model).as_dict() for model in musicnn.MODELS}
    return {genre: means[spec[0]][spec[1]] for genre, spec in GENRE_TAGS.items() if spec}


def wilson(correct: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a proportion."""
    if n == 0:
        return math.nan, math.nan
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def _accuracy_line(name: str, rows: list[dict[str, str]]) -> str:
    correct = sum(r["label"] == r["predicted"] for r in rows)
    lo, hi = wilson(correct, len(rows))
    return f"| {name} | {len(rows)} | {correct} | {correct / max(len(rows), 1):.3f} | [{lo:.3f}, {hi:.3f}] |"


def write_report(rows: list[dict[str, str]], val_ids: set[str] | None, out: Path, source: Path, seconds: float) -> None:
    genres = sorted(set(GENRE_TAGS) | {r["label"] for r in rows})
    mapped = [g for g in genres if GENRE_TAGS.get(g)]
    lines = [
        f"# Zero-shot musicnn baseline on {source.name}",
        "",
        f"Produced by `scripts/zero_shot_musicnn.py {source}` ({len(rows)} clips, {seconds:.0f} s). No training: each clip",
        "gets the GTZAN genre whose mapped musicnn tag has the highest score averaged over its 3 s patches.",
        "",
        "## Mapping",
        "",
        "| genre | tag | model |",
        "|---|---|---|",
    ]
    for g in genres:
        spec = GENRE_TAGS.get(g)
        lines.append(f"| {g} | {spec[1] if spec else '(none)'} | {spec[0] if spec else '-- always wrong'} |")
    lines += [
        "",
        "## Accuracy (track level, 95% Wilson interval)",
        "",
        "| clips | n | correct | accuracy | 95% CI |",
        "|---|---|---|---|---|",
        _accuracy_line("all", rows),
        _accuracy_line(f"mapped genres only ({len(mapped)})", [r for r in rows if GENRE_TAGS.get(r["label"])]),
        *([_accuracy_line("fault-filtered valid list", [r for r in rows if r["track_id"] in val_ids])] if val_ids else []),
        "",
        "## Per genre",
        "",
        "| genre | clips | recall | precision |",
        "|---|---|---|---|",
    ]
    recalls = []
    for g in genres:
        of_genre = [r for r in rows if r["label"] == g]
        predicted = [r for r in rows if r["predicted"] == g]
        recall = sum(r["predicted"] == g for r in of_genre) / max(len(of_genre), 1)
        precision = sum(r["label"] == g for r in predicted) / len(predicted) if predicted else math.nan
        recalls.append(recall)
        lines.append(f"| {g} | {len(of_genre)} | {recall:.3f} | {precision:.3f} |")
    lines += ["", f"Macro-averaged recall over all {len(genres)} genres: {np.mean(recalls):.3f}; over the {len(mapped)} mapped: "
              f"{np.mean([r for g, r in zip(genres, recalls) if GENRE_TAGS.get(g)]):.3f}.", "",
              "## Confusion matrix (rows: true genre, columns: predicted)", ""]
    counts = Counter((r["label"], r["predicted"]) for r in rows)
    lines.append("| true \\ predicted | " + " | ".join(mapped) + " |")
    lines.append("|---" * (len(mapped) + 1) + "|")
    for g in genres:
        lines.append(f"| {g} | " + " | ".join(str(counts[(g, p)]) for p in mapped) + " |")
    lines += ["", "The GTZAN dev set is imbalanced (about 70 clips of classical, jazz, pop and rock; 9-15 of the others):",
              "do not read much into a 10-clip genre.", ""]
    out.write_text("\n".join(lines))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", type=Path, help="dataset folder of <genre>/<clips>; GTZAN genre names can be right, others never")
    parser.add_argument("--out", type=Path, default=Path("reports/zero_shot_musicnn.md"))
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    try:
        tracks = discover(args.data, hashes=False)
    except GenrekitError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        val_ids: set[str] | None = set(make_split(tracks, SplitConfig(strategy="filtered")).tracks_in("val"))
    except ParameterError:  # no GTZAN track ids: the filtered split does not apply
        val_ids = None
    rows: list[dict[str, str]] = []
    failed = 0
    start = time.perf_counter()
    for i, track in enumerate(tracks, 1):
        try:
            scores = genre_scores(track.path)
        except GenrekitError as e:
            print(f"skipped: {e}", file=sys.stderr)
            failed += 1
            continue
        predicted = max(scores, key=scores.__getitem__)
        rows.append({"track_id": track.track_id, "label": track.label, "predicted": predicted,
                     **{g: f"{s:.5f}" for g, s in scores.items()}})
        if i % 25 == 0:
            print(f"{i}/{len(tracks)} clips, {time.perf_counter() - start:.0f} s", file=sys.stderr)
    seconds = time.perf_counter() - start
    if not rows:
        print(f"error: none of the {len(tracks)} clips in {args.data} could be decoded", file=sys.stderr)
        return 2

    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out.with_suffix(".csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    write_report(rows, val_ids, args.out, args.data, seconds)
    correct = sum(r["label"] == r["predicted"] for r in rows)
    mapped_rows = [r for r in rows if GENRE_TAGS.get(r["label"])]
    mapped_accuracy = f"{sum(r['label'] == r['predicted'] for r in mapped_rows) / len(mapped_rows):.3f}" if mapped_rows else "n/a"
    print(f"accuracy: {correct / len(rows):.3f} over {len(rows)} clips; {mapped_accuracy} over the {len(mapped_rows)} "
          f"clips of mapped genres")
    for g in sorted({r["label"] for r in rows}):
        of_genre = [r for r in rows if r["label"] == g]
        print(f"  {g:10s} {sum(r['predicted'] == g for r in of_genre):3d}/{len(of_genre):3d}")
    print(f"report: {args.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
