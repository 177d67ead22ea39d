"""Inference: end-to-end ``predict`` latency on one 30 s WAV with one thread, and folder throughput.

Latency: :meth:`GenreClassifier.predict` on a 30 s 16-bit WAV (decode, segment, log-mel, model, soft vote),
``torch.set_num_threads(1)``, p50 over ``--repeats`` after a warm-up. Baseline in the same run: the notebook
way, ``librosa.load`` + per-segment ``melspectrogram``/``power_to_db`` + the same cnn2 weights run eagerly
in NCHW with explicit-pad pooling. Models: cnn2 with random weights (inference costs the same as trained),
the shipped ``default`` model when there is one, and a ``musicnn-head`` model over musicnn embeddings
(random head; the shipped musicnn weights do the heavy part).

Stages (cnn2, median CPU ms, interleaved): decode, segment, log-mel, the model folded (what runs) and
eager channels_last (what ran before), soft vote + Prediction objects, and the whole ``predict`` both ways.

Throughput: ``predict_many`` over ``--tracks`` 30 s WAVs with ``jobs=1`` (all in this process) and ``jobs=2``
(decoding + features in 2 worker processes while this process runs the model), tracks/s and the 1 -> 2
scaling; the model runs on one thread, as ``genrekit predict`` runs it (rows before 2026-11-24 06:45 used
torch's default 2 threads in this process).

Prediction vs outcome, per change:

- Before: cnn2 on 10 segments is ~30 ms of the model (issue) + ~20 ms of decode and features after the
  feature-path work (see bench_features.py), so p50 ~50-60 ms on an idle core. Running the model
  channels_last was predicted ~1.5x on the model part and measured 1.9x (346 -> 182 ms busy, same output).
  Outcome on the shared machine (load ~7): p50 96 ms wall, 63 ms CPU, 7.2x the notebook way.
- Where the time went (torch.profiler and these stages, one thread, load ~1): model 29 ms (convs 52%,
  ReLU 16%, max-pool 15%, BatchNorm 13%, linear 3%), log-mel 8.7 ms (half of it the FFT), decode 2 ms,
  segmenting 0.3 ms, soft vote + Prediction objects 0.03 ms. conv2 (32 -> 64, 3x3: 1.4 GFLOP a clip)
  runs at ~85 GFLOP/s in oneDNN, most of this core's fp32 peak; the rest are passes over the 20 MB
  first-block activations.
- Folding for inference (genrekit.models.folding.FoldedConvNet): each BatchNorm folded into the next conv or
  linear layer, ReLU after max-pooling (4x fewer values), oneDNN blocked tensors so pooling skips the
  argmax indices. Predicted: BatchNorm's 13% gone, ~3/4 of ReLU's 16%, a little of pooling: ~1.3x on
  the model. Outcome: 29.0 -> 23.0 ms CPU at load ~1 (1.26x; folding alone 24.2 ms); under load the
  eager model's extra passes over memory suffer most, 57-65 -> 24-29 ms (2-2.7x). Probabilities equal
  within 1e-5 (tests/test_inference.py, trained-like BatchNorm statistics).
- Tried and left: torch.jit.trace + optimize_for_inference of the folded model, 21.5 ms (a further 7%)
  but 0.28 s of tracing at every load, against the cold-start budget; torch.jit.freeze of the scripted
  NCHW model, no gain over NCHW (84 ms); 1, 2 or 5 segments per model call instead of all 10:
  32, 25.7, 25.1 vs 24.2 ms; the first block 2 segments at a time to keep its activations in cache:
  22.9 vs 23.1 ms, noise. bf16 was not tried: outputs would move ~1e-2, past the 1e-5 the public
  probabilities are held to.
- Outcome end to end: cnn2 p50 55 ms wall, 35 ms CPU at load 5 and 40 ms wall and CPU at load 2.4
  (target <= 60 ms); 1.95x the eager model in the same run (which suffers most from other jobs' memory
  traffic: 29 ms alone at load ~1, 54-62 ms since), 3.6-12x the notebook way (also load-bound: 142 ms
  at load 2.4, 679 ms at load 5). What is left: the model ~23 ms, log-mel ~7 ms (features.py, mostly
  the FFT, see bench_features.py), decode 1-2 ms.
- musicnn-head needs musicnn embeddings of both MSD and MTT models (genrekit.features.musicnn): ~1.3 CPU s a
  clip now, far from 300 ms; that model's cost is worked on in musicnn.py (see bench_musicnn.py).
- Throughput, one model thread: 20.3 -> 12.9 tracks/s from 1 to 2 jobs at load 5, 30.2 -> 32.9 at
  load 2.4 (1.09x; before, with 2 model threads: 3.0 -> 4.4). With 2 jobs the model process is the
  bottleneck: its ~24.5 CPU ms a track (the model) caps it at ~41 tracks/s, reached in steady state
  after ~1.2 s of worker start-up (each worker imports torch). Scaling further needs the model in the
  workers too (and no 0.67 MB of features per track through a pipe); not done.

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
from genrekit.audio import load_audio, segment_audio
from genrekit.features import extract_features
from genrekit.classifier import GenreClassifier, available_models, load_model

SECTION = "## Inference (`benchmarks/bench_inference.py`)"
COLUMNS = ("date (UTC)", "machine", "model", "p50 ms wall (CPU), 1 thread, 30 s WAV", "notebook-way p50 ms", "speedup", "target", "tracks", "tracks/s 1 job", "tracks/s 2 jobs", "scaling")
STAGES_SECTION = "## Inference stages, cnn2 (`benchmarks/bench_inference.py`)"
STAGES_COLUMNS = (
    "date (UTC)", "machine", "runs", "decode ms", "segment ms", "log-mel ms", "model ms: folded (eager channels_last)", "model speedup",
    "vote + Prediction ms", "predict p50 ms CPU: folded (eager)", "predict speedup",
)


def eager_model(path: str) -> GenreClassifier:
    """The classifier as it ran before BatchNorm folding: the checkpoint's eager model, channels_last."""
    classifier = load_model(path)
    classifier.runner.network = classifier.checkpoint.build().to(memory_format=torch.channels_last)
    return classifier


def stage_times(path: str, clip: Path, repeats: int) -> dict[str, float]:
    """Median CPU ms of each stage of one ``predict`` (one thread), the model folded and eager, interleaved."""
    folded, eager = load_model(path), eager_model(path)
    config = folded.feature_config
    y = load_audio(clip, sample_rate=config.audio.sample_rate)
    segments, _ = segment_audio(y, config.audio)
    features = extract_features(segments, config)
    duration = len(y) / config.audio.sample_rate
    probabilities = folded.predict_proba_features(features)
    stages = {
        "decode": lambda: load_audio(clip, sample_rate=config.audio.sample_rate),
        "segment": lambda: segment_audio(y, config.audio),
        "log-mel": lambda: extract_features(segments, config),
        "model": lambda: folded.predict_proba_features(features),
        "model eager": lambda: eager.predict_proba_features(features),
        "vote": lambda: folded._prediction(str(clip), probabilities, duration),  # soft vote and Prediction objects
        "predict": lambda: folded.predict(clip),
        "predict eager": lambda: eager.predict(clip),
    }
    for fn in stages.values():
        fn()  # warm-up
    cpu: dict[str, list[float]] = {}
    interleaved(stages, repeats, cpu)
    return {name: median(values) * 1000 for name, values in cpu.items()}


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
            classifier = load_model(path)
            is_musicnn = classifier.feature_config.kind == "musicnn"
            fns = {"genrekit": (lambda m: (lambda: m.predict(clip)))(classifier)}
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
        stages = stage_times(models["cnn2 (random weights)"], clip, args.repeats)
        print("cnn2 stages, median CPU ms: " + ", ".join(f"{k} {v:.1f}" for k, v in stages.items()))
        print(f"  model folded vs eager channels_last (before): {stages['model eager'] / stages['model']:.2f}x; "
              f"predict {stages['predict eager'] / stages['predict']:.2f}x")

        tracks = synth_dataset(Path(tempfile.gettempdir()) / "genrekit-bench-clips", args.tracks)
        model = load_model(models["cnn2 (random weights)"])
        runs = {f"jobs={j}": (lambda j: (lambda: sum(1 for _ in model.predict_many(tracks, jobs=j))))(j) for j in (1, 2)}
        times = interleaved(runs, args.throughput_repeats)
        one, two = (len(tracks) / median(times[f"jobs={j}"]) for j in (1, 2))
        print(f"folder of {len(tracks)} 30 s WAVs, cnn2: {one:.1f} tracks/s with 1 job, {two:.1f} with 2: {two / one:.2f}x scaling")
    if not args.no_record:
        for row in rows:
            append_row(SECTION, COLUMNS, [now(), machine(), *row, len(tracks), f"{one:.1f}", f"{two:.1f}", f"{two / one:.2f}x"])
        append_row(STAGES_SECTION, STAGES_COLUMNS, [
            now(), machine(), args.repeats, *(f"{stages[k]:.1f}" for k in ("decode", "segment", "log-mel")),
            f"{stages['model']:.1f} ({stages['model eager']:.1f})", f"**{stages['model eager'] / stages['model']:.2f}x**", f"{stages['vote']:.2f}",
            f"{stages['predict']:.1f} ({stages['predict eager']:.1f})", f"**{stages['predict eager'] / stages['predict']:.2f}x**",
        ])


if __name__ == "__main__":
    main()
