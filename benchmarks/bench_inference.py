"""Inference: end-to-end ``predict`` latency on one 30 s WAV with one thread, and folder throughput.

Latency: :meth:`GenreClassifier.predict` on a 30 s 16-bit WAV (decode, segment, log-mel, model, soft vote),
``torch.set_num_threads(1)``, p50 over ``--repeats`` after a warm-up. Baseline in the same run: the notebook
way, ``librosa.load`` + per-segment ``melspectrogram``/``power_to_db`` + the same cnn2 weights run eagerly
in NCHW with explicit-pad pooling. Models: cnn2 with random weights (inference costs the same as trained),
the shipped ``default`` model when there is one, and a ``musicnn-head`` model over musicnn embeddings
(random head; the shipped musicnn weights do the heavy part).

Throughput: ``predict_many`` over ``--tracks`` 30 s WAVs with ``jobs=1`` (all in this process) and ``jobs=2``
(decoding + features in 2 worker processes while this process runs the model), tracks/s and the 1 -> 2 scaling.

Prediction vs outcome: cnn2 on 10 segments is ~30 ms of the model (issue) + ~20 ms of decode and features
after the feature-path work (see bench_features.py), so p50 ~50-60 ms on an idle core. Running the model
channels_last was predicted ~1.5x on the model part and measured 1.9x (346 -> 182 ms busy, same output).
Outcome on the shared machine (load ~7): p50 96 ms wall, 63 ms CPU, 7.2x the notebook way. musicnn-head
needs musicnn embeddings of both MSD and MTT models (genrekit.musicnn): ~2 CPU s a clip, far from 300 ms;
that model's cost is left (see bench_musicnn.py). Scaling 1 -> 2 workers: predicted < 2x since both cores
are also busy with other work; measured 1.48x.

    .venv/bin/python benchmarks/bench_inference.py [--repeats 15] [--tracks 200]
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from _common import append_row, interleaved, machine, median, now, random_model, synth_clip, synth_dataset
from genrekit.inference import available_models, load_model

SECTION = "## Inference (`benchmarks/bench_inference.py`)"
COLUMNS = ("date (UTC)", "machine", "model", "p50 ms wall (CPU), 1 thread, 30 s WAV", "notebook-way p50 ms", "speedup", "target", "tracks", "tracks/s 1 job", "tracks/s 2 jobs", "scaling")


def notebook_predict(model_path: str) -> Callable[[Path], str]:
    """The baseline: librosa features per segment, the weights in an eager NCHW cnn2 with explicit-pad pooling."""
    import librosa

    from bench_training import naive_model

    checkpoint = load_model(model_path).checkpoint
    net = naive_model(0)
    net.load_state_dict(checkpoint.state_dict)
    net.eval()

    def predict(path: Path) -> str:
        y, sr = librosa.load(path, sr=22050)
        mels = [
            librosa.power_to_db(librosa.feature.melspectrogram(y=y[s : s + 66150], sr=sr, n_fft=2048, hop_length=512, n_mels=128), ref=np.max)
            for s in range(0, len(y) - 66150 + 1, 66150)
        ]
        with torch.no_grad():
            probs = torch.softmax(net(torch.tensor(np.stack(mels))), dim=1).mean(0)
        return checkpoint.labels[int(probs.argmax())]

    return predict


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--tracks", type=int, default=200)
    parser.add_argument("--throughput-repeats", type=int, default=2)
    parser.add_argument("--no-record", action="store_true", help="do not append to benchmarks/RESULTS.md")
    args = parser.parse_args()
    default_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="genrekit-bench-inference-") as tmp:
        work = Path(tmp)
        clip = work / "one.wav"
        sf.write(clip, synth_clip(7), 22050, subtype="PCM_16")
        models = {"cnn2 (random weights)": str(random_model(work / "cnn2.pt"))}
        if "default" in available_models():
            models["default (shipped)"] = "default"
        models["musicnn-head (random head)"] = str(random_model(work / "musicnn_head.pt", "musicnn-head"))
        baseline = notebook_predict(models["cnn2 (random weights)"])
        baseline(clip)
        rows = []
        for name, path in models.items():
            is_musicnn = name.startswith("musicnn")
            fns = {"genrekit": (lambda m: (lambda: m.predict(clip)))(load_model(path))}
            if not is_musicnn:
                fns["notebook"] = lambda: baseline(clip)
            for fn in fns.values():
                fn()  # warm-up
            cpu: dict[str, list[float]] = {}
            times = interleaved(fns, args.repeats if not is_musicnn else max(3, args.repeats // 3), cpu)
            p50, p50_cpu = median(times["genrekit"]) * 1000, median(cpu["genrekit"]) * 1000
            target = 300 if is_musicnn else 60
            base = median(times["notebook"]) * 1000 if "notebook" in times else float("nan")
            print(f"{name}: predict p50 {p50:.0f} ms wall, {p50_cpu:.0f} ms CPU (1 thread, {len(times['genrekit'])} runs; target <= {target} ms)"
                  + (f", notebook way {base:.0f} ms wall: {base / p50:.2f}x faster" if not is_musicnn else ""))
            rows.append([name, f"{p50:.0f} ({p50_cpu:.0f} CPU)", "—" if is_musicnn else f"{base:.0f}", "—" if is_musicnn else f"**{base / p50:.2f}x**", f"≤ {target}"])

        tracks = synth_dataset(Path(tempfile.gettempdir()) / "genrekit-bench-clips", args.tracks)
        torch.set_num_threads(default_threads)
        model = load_model(models["cnn2 (random weights)"])
        runs = {f"jobs={j}": (lambda j: (lambda: sum(1 for _ in model.predict_many(tracks, jobs=j))))(j) for j in (1, 2)}
        times = interleaved(runs, args.throughput_repeats)
        one, two = (len(tracks) / median(times[f"jobs={j}"]) for j in (1, 2))
        print(f"folder of {len(tracks)} 30 s WAVs, cnn2: {one:.1f} tracks/s with 1 job, {two:.1f} with 2: {two / one:.2f}x scaling")
    if not args.no_record:
        for row in rows:
            append_row(SECTION, COLUMNS, [now(), machine(), *row, len(tracks), f"{one:.1f}", f"{two:.1f}", f"{two / one:.2f}x"])


if __name__ == "__main__":
    main()
