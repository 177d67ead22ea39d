#!/usr/bin/env bash
# Train the model shipped as `genrekit.load_model()` ("default") and measure it, on the real GTZAN
# clips of ../shared/data/gtzan-dev.
#
# Approach: musicnn-head (a dropout + linear classifier over frozen, pretrained musicnn embeddings).
# It was chosen over cnn2 trained from scratch because on the same artist-aware validation tracks it
# measures higher (see reports/default_model.md, written by this script, and reports/reproduce_original.md).
#
# 1. Store of musicnn embeddings for the fault-free dev clips (those in the fault-filtered split lists:
#    the other 37 dev clips are GTZAN duplicates, mislabelings or distortions).
# 2. Held-out estimate: the same recipe trained on the filtered *train* tracks, evaluated on the filtered
#    *valid* tracks (artist-disjoint). Pessimistic on this dev set: its train list has no blues track
#    and one disco track.
# 3. The shipped model: the same recipe on a stratified random 90/10 track split of all fault-free clips,
#    model.pt = last epoch (no choice depends on validation), copied to src/genrekit/weights/default.pt
#    with the held-out estimate of step 2 recorded in its metadata.
#
# Usage: scripts/train_default_model.sh   (env: DATA=../shared/data/gtzan-dev, RUNS=runs, EPOCHS=30)
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/data/gtzan-dev}
RUNS=${RUNS:-runs}
EPOCHS=${EPOCHS:-30}
GK=.venv/bin/genrekit
PY=.venv/bin/python
STORE=$RUNS/store-musicnn-faultfree
RECIPE=(--model musicnn-head --lr 1e-3 --epochs "$EPOCHS" --class-weighting balanced --label-smoothing 0.1 --keep last --seed 0)
mkdir -p "$RUNS" reports

$PY - "$DATA" "$RUNS/faultfree.csv" <<'PY'
"""Manifest of the dev clips that appear in the fault-filtered split lists."""
import csv, sys
from genrekit.datasets import discover
from genrekit.splits import filtered_lists
listed = {t for ids in filtered_lists().values() for t in ids}
tracks = [t for t in discover(sys.argv[1]) if t.track_id in listed]
with open(sys.argv[2], "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["path", "label", "track_id"])
    w.writerows([[str(t.path.resolve()), t.label, t.track_id] for t in tracks])
print(f"{len(tracks)} fault-free clips -> {sys.argv[2]}")
PY

$GK prepare "$RUNS/faultfree.csv" --out "$STORE" --features musicnn

rm -rf "$RUNS/default-heldout" "$RUNS/default-model"
$GK train "$STORE" --split filtered "${RECIPE[@]}" --name default-heldout --runs-dir "$RUNS"
$GK evaluate "$RUNS/default-heldout" --split val
$GK train "$STORE" --split random --val-fraction 0.1 "${RECIPE[@]}" --name default-model --runs-dir "$RUNS"

$PY - "$RUNS/default-heldout" "$RUNS/default-model" "${RECIPE[*]}" "$DATA" <<'PY'
"""Record the held-out estimate in the shipped checkpoint and write reports/default_model.md."""
import sys
from dataclasses import replace
from pathlib import Path
from genrekit.checkpoint import load_checkpoint, save_checkpoint
heldout, final = Path(sys.argv[1]), Path(sys.argv[2])
est = load_checkpoint(heldout / "model.pt").metadata["validation"]
ckpt = load_checkpoint(final / "model.pt")
meta = dict(ckpt.metadata)
# Absolute paths of this machine mean nothing elsewhere: the data as given, the store relative to the repository.
data_dir, repo = str(Path(sys.argv[4]).resolve()), str(Path.cwd()) + "/"
meta["training_data"] = {
    k: v.replace(data_dir, sys.argv[4]).replace(repo, "") if isinstance(v, str) else v for k, v in meta["training_data"].items()
}
meta["validation_own_split"] = {**meta["validation"], "note": "random track split of the training clips; GTZAN artists repeat, so optimistic"}
meta["validation"] = {**est, "protocol": "filtered (artist-disjoint): same recipe trained on the 203 filtered-train dev tracks, evaluated on the 108 filtered-valid dev tracks", "note": "pessimistic on the dev set: no blues and one disco track to train on"}
meta["description"] = ("musicnn-head over frozen musicnn (MSD+MTT) embeddings, trained on the fault-free real GTZAN dev clips; "
                       f"held-out (artist-disjoint) track accuracy {est['track_accuracy']:.3f}")
out = Path("src/genrekit/weights/default.pt")
save_checkpoint(replace(ckpt, metadata=meta), out)
lo, hi = est["track_accuracy_ci95"]
own = meta["validation_own_split"]
lines = [
    "# The shipped default model", "",
    "Produced by `scripts/train_default_model.sh` on `../shared/data/gtzan-dev`.", "",
    f"- Model: musicnn-head (dropout + linear over 3412-d musicnn embeddings), recipe `genrekit train STORE {sys.argv[3]}`.",
    f"- Training data of the shipped weights: {meta['training_data']['dataset']}; {meta['training_data']['n_train_tracks']} train / {meta['training_data']['n_val_tracks']} val tracks (random stratified split).", "",
    "| protocol | tracks evaluated | track accuracy | 95% CI | macro-F1 |", "|---|---|---|---|---|",
    f"| filtered, artist-disjoint (held-out estimate; recipe trained on 203 tracks) | {est['n_tracks']} | {est['track_accuracy']:.3f} | {lo:.3f}–{hi:.3f} | {est['macro_f1']:.3f} |",
    f"| random track split of the shipped model's own data (optimistic: artists repeat) | {own['n_tracks']} | {own['track_accuracy']:.3f} | {own['track_accuracy_ci95'][0]:.3f}–{own['track_accuracy_ci95'][1]:.3f} | {own['macro_f1']:.3f} |",
]
Path("reports/default_model.md").write_text("\n".join(lines) + "\n")
print("\n".join(lines))
print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB)")
PY
