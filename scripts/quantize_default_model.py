"""The shipped model with an int8 musicnn front end (``genrekit.runtime.quantize``), checked before it ships.

Protocol, written before the results (session 4; the int8 attempt of session 3 quantized the convolutions'
outputs with one range for all channels and 7-bit weights, and agreed on 145/149 excerpts):

1. Export the shipped ``default`` model (float32 ONNX, the same probabilities as PyTorch within 1e-5).
2. Calibrate the timbral convolutions' output ranges on the **even-numbered** gtzan-dev clips (3 s patches as
   ``predict`` cuts them, as they are and peak-normalized); the input range needs no calibration
   (``quantize.log_mel_bound``).
3. Candidates, fastest first: all four timbral convolutions (7 x 38 and 7 x 67) in int8; then the two
   7 x 67 ones only. The first that reaches ``--min-agreement`` (99 %) top-1 agreement with float32 (the
   track's genre from ``predict``) on **each** of: the odd-numbered clips (held out of calibration), every
   excerpt (gtzan-dev-excerpts, never calibrated on) and all clips, ships as ``--out``
   (``src/genrekit/weights/default-int8.onnx``, which ``--backend auto`` runs). None reaching it: nothing ships.
4. Report, per candidate and set: agreement, the largest probability difference, accuracy of both against the
   labels (in-sample: the model was fitted on these files; it shows whether answers move, not how good they
   are) and the network's time for a 30 s track on one thread next to float32's; ``reports/quantization.md``.

    .venv/bin/python scripts/quantize_default_model.py [--jobs 2]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("GENREKIT_SHARED_DATA", REPO.parent / "shared" / "data"))
SETS = {"clips": SHARED / "gtzan-dev", "excerpts": SHARED / "gtzan-dev-excerpts"}


def _files(root: Path) -> list[tuple[Path, str]]:
    return [(p, p.parent.name) for p in sorted(root.glob("*/*.*"))]


def _patches(path: Path, config: Any, *, peak_normalize: bool = False) -> np.ndarray:
    """The clip's 3 s patches as ``predict`` cuts them with the model's feature ``config``; peak-normalized (as
    loud as the signal can be without clipping), they cover the range of loud input such as mastered pop or
    normalized excerpts."""
    from genrekit.audio import load_audio, segment_audio
    from genrekit.runtime.export import musicnn_patches

    y = load_audio(path, sample_rate=config.audio.sample_rate)
    if peak_normalize:
        y = y / max(float(np.abs(y).max()), 1e-9)
    segments, _ = segment_audio(y, config.audio)
    return musicnn_patches(segments, config)


def _network_seconds(models: dict[str, Any], batch: np.ndarray, repeats: int = 7) -> dict[str, float]:
    """Median time of one forward pass over ``batch`` (a 30 s track's patches) per model, interleaved."""
    times: dict[str, list[float]] = {k: [] for k in models}
    for _ in range(repeats):
        for k, m in models.items():
            start = time.perf_counter()
            m.predict_proba_features(batch)
            times[k].append(time.perf_counter() - start)
    return {k: float(np.median(v)) for k, v in times.items()}


def _compare(models: dict[str, Any], sets: dict[str, list[tuple[Path, str]]], jobs: int) -> dict[str, dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {}
    cache: dict[tuple[str, str], list[Any]] = {}
    for name, files in sets.items():
        paths = [p for p, _ in files]
        results = {}
        for k, m in models.items():
            key = (k, name)
            if key not in cache:
                cache[key] = list(m.predict_many(paths, jobs=jobs))
            results[k] = cache[key]
        a, b = results["fp32"], results["int8"]
        same = sum(x.genre == y.genre for x, y in zip(a, b))
        worst = max(float(np.max(np.abs(np.subtract(list(x.probabilities.values()), list(y.probabilities.values()))))) for x, y in zip(a, b))
        accuracy = {k: float(np.mean([r.genre == g for r, (_, g) in zip(v, files)])) for k, v in results.items()}
        flipped = [f"{p.parent.name}/{p.name}" for (p, _), x, y in zip(files, a, b) if x.genre != y.genre]
        rows[name] = {"n": len(files), "agree": same, "agreement": same / len(files), "max_abs_dp": worst, "accuracy": accuracy, "flipped": flipped}
        print(name, json.dumps(rows[name]), flush=True)
    return rows


CANDIDATES = {"all four timbral convolutions (7 x 38, 7 x 67)": (38, 67), "the 7 x 67 timbral convolutions only": (67,)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=REPO / "src/genrekit/weights/default-int8.onnx")
    parser.add_argument("--report", type=Path, default=REPO / "reports/quantization.md")
    parser.add_argument("--margin", type=float, default=1.25)
    parser.add_argument("--min-agreement", type=float, default=0.99)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)
    from genrekit import load_model
    from genrekit.runtime.export import onnx_bytes
    from genrekit.classifier import GenreClassifier
    from genrekit.runtime.onnx import OnnxRunner, checkpoint_digest
    from genrekit.runtime.quantize import quantize_timbral

    reference = load_model("default", backend="torch")
    fp32 = onnx_bytes(reference.checkpoint)
    clips, excerpts = _files(SETS["clips"]), _files(SETS["excerpts"])
    sets = {"held-out clips (odd)": clips[1::2], "excerpts": excerpts, "all clips": clips}
    config = reference.feature_config
    calibration = [_patches(p, config, peak_normalize=loud) for p, _ in clips[::2] for loud in (False, True)]
    print(f"calibrating on {len(clips[::2])} even-numbered clips, as they are and peak-normalized", flush=True)
    timing_batch = _patches(clips[0][0], config)

    lines = [
        "# int8 musicnn front end vs float32 (scripts/quantize_default_model.py)",
        "",
        f"Calibration: the {len(clips[::2])} even-numbered gtzan-dev clips, as they are and peak-normalized (output ranges x {args.margin:g});",
        "the input range is the log-mel's bound, no calibration. 8-bit per-channel weights, 7-bit activations, int32 sums;",
        "the rest of the graph float32. Top-1 = the track's genre from `predict`. Accuracy is against the GTZAN labels,",
        "**in-sample** (the shipped model was fitted on these clips and excerpts; its held-out accuracy is in",
        "reports/model_selection.md): it shows whether quantization moves answers, not how good they are.",
        f"A candidate ships when its agreement is at least {args.min_agreement:.0%} on each set; the first one that does is shipped.",
        "",
    ]
    shipped = None
    fp32_model = GenreClassifier(OnnxRunner(fp32, name="default"), name="default")
    for label, widths in CANDIDATES.items():
        int8 = quantize_timbral(fp32, calibration, widths=widths, margin=args.margin, source=checkpoint_digest(reference.checkpoint))
        models = {"fp32": fp32_model, "int8": GenreClassifier(OnnxRunner(int8, name="default"), name="default")}
        seconds = _network_seconds(models, timing_batch)
        print(label, seconds, flush=True)
        rows = _compare(models, sets, args.jobs)
        ok = all(r["agreement"] >= args.min_agreement for r in rows.values())
        lines += [
            f"## {label}",
            "",
            f"Network, one 30 s track (10 patches), one thread: {seconds['int8'] * 1000:.0f} ms vs {seconds['fp32'] * 1000:.0f} ms float32 "
            f"({seconds['fp32'] / seconds['int8']:.2f}x).",
            "",
            "| set | files | top-1 agreement | max abs probability difference | accuracy fp32 | accuracy int8 | flipped |",
            "|---|---|---|---|---|---|---|",
        ]
        for name, r in rows.items():
            acc = r["accuracy"]
            lines.append(f"| {name} | {r['n']} | {r['agree']}/{r['n']} ({r['agreement']:.1%}) | {r['max_abs_dp']:.3f} | {acc['fp32']:.3f} | {acc['int8']:.3f} | {', '.join(r['flipped']) or 'none'} |")
        lines += ["", f"Meets the bar: {'yes' if ok else 'no'}.", ""]
        if ok:
            shipped = (label, int8)
            break
    if shipped:
        validation = reference.checkpoint.metadata["validation"]
        accuracy, ci = validation["track_accuracy"], validation["track_accuracy_ci95"]
        moved = sum(len(r["flipped"]) for name, r in rows.items() if name in ("excerpts", "all clips"))
        total = sum(r["n"] for name, r in rows.items() if name in ("excerpts", "all clips"))
        lines += [
            f"Model-selection accuracy: the shipped int8 graph moves the answer on {moved} of the {total} dev tracks ({moved / total:.1%}), so the",
            f"held-out accuracy of reports/model_selection.md ({accuracy:.3f}, 95 % CI [{ci[0]:.3f}, {ci[1]:.3f}]) can move by at most that much: inside its interval.",
            "",
        ]
    lines += [f"Shipped: {shipped[0] if shipped else 'nothing'}" + (f" (`{args.out.relative_to(REPO)}`, run by `--backend auto`)." if shipped else "; `auto` runs float32."), ""]
    args.report.write_text("\n".join(lines))
    print(f"wrote {args.report}")
    if shipped is None:
        args.out.unlink(missing_ok=True)
        return 1
    args.out.write_bytes(shipped[1])
    print(f"wrote {args.out} ({len(shipped[1]) / 1e6:.1f} MB), sha256 {hashlib.sha256(shipped[1]).hexdigest()[:16]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
