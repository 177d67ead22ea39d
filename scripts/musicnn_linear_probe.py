"""Linear probe of musicnn embeddings: is the frozen front end good enough to ship a head on it?

Trains a standardized multinomial logistic regression (scikit-learn) on the segments of the
fault-filtered *train* tracks of a ``--features musicnn`` store and reports the track accuracy on the
*valid* tracks (soft vote: segment probabilities averaged per track) with a 95% Wilson interval, for the
whole embedding and (``--blocks``) for parts of it (:data:`genrekit.features.musicnn.EMBEDDING_LAYOUT`), which is how
the embedding was chosen. The regularization strength is picked by 3-fold cross-validation over
training *tracks* (segments of one track never straddle folds), so the valid tracks decide nothing.
Dimensions that are constant on the training segments (musicnn has many dead front-end units) are
dropped first.

On gtzan-dev the filtered train list has no blues track and one disco track, while valid has 10 and
8: those valid tracks can hardly be right, whatever the features.

    .venv/bin/genrekit prepare ../shared/data/gtzan-dev --out /tmp/store_musicnn --features musicnn
    .venv/bin/python scripts/musicnn_linear_probe.py /tmp/store_musicnn [--blocks]
    .venv/bin/python scripts/musicnn_linear_probe.py /tmp/store_musicnn --kfold 5 --c 0.1

``--kfold K`` instead runs genrekit's stratified k-fold split over all tracks with a fixed ``--c``: each
fold's test tracks are predicted by a model fit on the other folds, so every genre is trained on. GTZAN
artists repeat within a genre and the dev set carries no artist groups, so this estimate is optimistic.
"""

from __future__ import annotations

import argparse
import math
import time
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold
from sklearn.preprocessing import StandardScaler

from genrekit.features import musicnn
from genrekit.datasets.splits import SplitConfig, make_split
from genrekit.datasets.store import open_store

C_GRID = (1e-3, 1e-2, 1e-1, 1.0)
N_FOLDS = 3


def wilson(correct: int, n: int, z: float = 1.96) -> tuple[float, float]:
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def _fit(x: np.ndarray, y: np.ndarray, c: float) -> tuple[StandardScaler, LogisticRegression]:
    scaler = StandardScaler().fit(x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = LogisticRegression(C=c, max_iter=500).fit(scaler.transform(x), y)
    return scaler, model


def _track_accuracy(proba: np.ndarray, classes: np.ndarray, y: np.ndarray, tracks: np.ndarray) -> tuple[int, int]:
    """Soft vote; ``classes`` maps probability columns to labels (a label absent from training has none)."""
    correct = 0
    names = np.unique(tracks)
    for t in names:
        rows = tracks == t
        correct += int(classes[proba[rows].mean(axis=0).argmax()] == y[rows][0])
    return correct, len(names)


def probe(x_train, y_train, g_train, x_val, y_val, g_val) -> tuple[float, int, int, float]:
    """Best C by grouped CV on train, then (C, correct, n, segment accuracy) on val."""
    folds = list(GroupKFold(n_splits=N_FOLDS).split(x_train, y_train, g_train))
    cv = []
    for c in C_GRID:
        hits = total = 0
        for fit_idx, test_idx in folds:
            scaler, model = _fit(x_train[fit_idx], y_train[fit_idx], c)
            proba = model.predict_proba(scaler.transform(x_train[test_idx]))
            h, n = _track_accuracy(proba, model.classes_, y_train[test_idx], g_train[test_idx])
            hits, total = hits + h, total + n
        cv.append(hits / total)
    best = C_GRID[int(np.argmax(cv))]
    scaler, model = _fit(x_train, y_train, best)
    proba = model.predict_proba(scaler.transform(x_val))
    correct, n = _track_accuracy(proba, model.classes_, y_val, g_val)
    return best, correct, n, float((model.classes_[proba.argmax(axis=1)] == y_val).mean())


def kfold(store, n_folds: int, c: float) -> None:
    """Pooled test-fold track accuracy and per-genre recall of ``n_folds``-fold cross-validation."""
    x = np.asarray(store.features, dtype=np.float32)
    labels = sorted(set(store.labels.tolist()))
    y = np.array([labels.index(v) for v in store.labels])
    hits: dict[str, bool] = {}
    for fold in range(n_folds):
        split = make_split(store.tracks, SplitConfig(strategy="kfold", n_folds=n_folds, fold=fold))
        part = np.array([split.partition.get(t, "") for t in store.track_ids])
        fit, test = np.isin(part, ("train", "val")), part == "test"
        alive = x[fit].std(axis=0) > 0
        scaler, model = _fit(x[fit][:, alive], y[fit], c)
        proba = model.predict_proba(scaler.transform(x[test][:, alive]))
        for t in np.unique(store.track_ids[test]):
            rows = store.track_ids[test] == t
            hits[t] = bool(model.classes_[proba[rows].mean(axis=0).argmax()] == y[test][rows][0])
    correct = sum(hits.values())
    lo, hi = wilson(correct, len(hits))
    print(f"{n_folds}-fold over {len(hits)} tracks, C={c:g}: track accuracy {correct}/{len(hits)} = {correct / len(hits):.3f} "
          f"[95% CI {lo:.3f}, {hi:.3f}]")
    label_of = {t.track_id: t.label for t in store.tracks}
    recalls = []
    for label in labels:
        of_label = [h for t, h in hits.items() if label_of[t] == label]
        recalls.append(np.mean(of_label))
        print(f"  {label:10s} recall {sum(of_label):3d}/{len(of_label):3d} = {recalls[-1]:.3f}")
    print(f"  macro recall {np.mean(recalls):.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("store")
    parser.add_argument("--kfold", type=int, default=0, help="run a K-fold protocol over all tracks instead")
    parser.add_argument("--c", type=float, default=0.1, help="regularization C for --kfold")
    parser.add_argument("--blocks", action="store_true", help="also probe parts of the embedding: penultimates, each model")
    args = parser.parse_args()

    store = open_store(args.store)
    if args.kfold:
        kfold(store, args.kfold, args.c)
        return
    split = make_split(store.tracks, SplitConfig(strategy="filtered"))
    part = np.array([split.partition.get(t, "") for t in store.track_ids])
    x = np.asarray(store.features, dtype=np.float32)
    labels = sorted(set(store.labels.tolist()))
    y = np.array([labels.index(v) for v in store.labels])
    tr, va = part == "train", part == "val"
    print(f"store {args.store}: {x.shape}; train {len(np.unique(store.track_ids[tr]))} tracks / {tr.sum()} segments, "
          f"valid {len(np.unique(store.track_ids[va]))} tracks / {va.sum()} segments")

    columns = {}
    lo = 0
    for model, layer, size in musicnn.EMBEDDING_LAYOUT:
        columns[f"{model}.{layer}"] = np.arange(lo, lo + size)
        lo += size
    subsets = {"all (the stored embedding)": np.arange(x.shape[1])}
    if args.blocks:
        subsets["both penultimates"] = np.concatenate([columns["MSD_musicnn.penultimate"], columns["MTT_musicnn.penultimate"]])
        subsets["MSD_musicnn (all blocks)"] = np.arange(0, x.shape[1] // 2)
        subsets["MTT_musicnn (all blocks)"] = np.arange(x.shape[1] // 2, x.shape[1])
    alive = x[tr].std(axis=0) > 0
    for name, cols in subsets.items():
        cols = cols[alive[cols]]
        start = time.perf_counter()
        c, correct, n, seg = probe(x[tr][:, cols], y[tr], store.track_ids[tr], x[va][:, cols], y[va], store.track_ids[va])
        lo_ci, hi_ci = wilson(correct, n)
        print(f"{name:28s} live dims {len(cols):5d}  C={c:g}  valid track accuracy {correct}/{n} = {correct / n:.3f} "
              f"[95% CI {lo_ci:.3f}, {hi_ci:.3f}]  segment accuracy {seg:.3f}  ({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
