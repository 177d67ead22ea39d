"""Fit the shipped models from the selection's decision; writes weights/default.pt, weights/zero-shot.pt and reports/default_model.md.

Run ``scripts/select_default_model.py`` first: it picks the recipe (``runs/selection/selection.json``),
the calibration temperature and the ``uncertain`` threshold, all on held-out folds. This script refits
the winning recipe on every fault-free dev clip, every excerpt and the crops (the regularization again by
artist-grouped inner cross-validation, now over all tracks), divides its logits by the temperature,
converts it to the ``musicnn-linear`` architecture and checks that the converted model gives
scikit-learn's probabilities. The zero-shot mapping ships beside it as ``zero-shot``, with its figures
from the same protocol.

    .venv/bin/python scripts/train_default_model.py
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import select_default_model as sel

from genrekit.features import musicnn
from genrekit.checkpoint import Checkpoint, save_checkpoint
from genrekit.config import AudioConfig
from genrekit.models import build_model

# selection candidate -> (musicnn-linear inputs, zero-shot prior)
RECIPES = {
    "tags-lr": ("tags", False),
    "tags-lr + zero-shot prior": ("tags", True),
    "penultimate+tags-lr": ("penultimate+tags", False),
    "penultimate+tags-lr + zero-shot prior": ("penultimate+tags", True),
}
WEIGHTS = Path("src/genrekit/weights")
PROTOCOL = f"artist-grouped {sel.N_FOLDS}-fold cross-validation x {sel.N_SEEDS} seeds over the dev tracks (reports/model_selection.md)"


def figures(result: dict) -> dict:
    """The card's figures: primary view, second view, and what they were measured on."""
    cv, swap = result["cv"], result["swap"]
    return {
        "protocol": PROTOCOL,
        "n_tracks": cv["n_tracks"],
        "track_accuracy": round(cv["accuracy"], 4),
        "track_accuracy_ci95": [round(x, 4) for x in cv["accuracy_ci95"]],
        "macro_recall": round(cv["macro_recall"], 4),
        "macro_recall_ci95": [round(x, 4) for x in cv["macro_recall_ci95"]],
        "macro_f1": round(cv["macro_f1"], 4),
        "ece": round(cv["ece"], 4),
        "excerpts_accuracy": round(cv["excerpts_accuracy"], 4),
        "second_view": {
            "protocol": "fault-filtered train <-> valid lists, swapped (artist-disjoint)",
            "n_tracks": swap["n_tracks"],
            "track_accuracy": round(swap["accuracy"], 4),
            "track_accuracy_ci95": [round(x, 4) for x in swap["accuracy_ci95"]],
            "macro_recall": round(swap["macro_recall"], 4),
        },
    }


def training_data(table: sel.Table) -> dict:
    return {
        "dataset": "real GTZAN dev clips (fault-free) and scarce-genre excerpts",
        "n_clips": int(len(np.unique(table.track[table.kind == "clip"]))),
        "n_excerpts": int(len(np.unique(table.track[table.kind == "excerpt"]))),
        "n_crops": int((table.kind == "crop").sum()),
        "n_artists": int(len(np.unique(table.artist))),
    }


def fit_default(table: sel.Table, recipe: str, temperature: float) -> tuple[Checkpoint, float]:
    inputs, prior = RECIPES[recipe]
    tracks = np.unique(table.track[table.kind != "crop"])
    x = sel.inputs(table, inputs)
    z = sel.zero_shot_prior(table.tag_logits) if prior else None
    c = sel._inner_c(table, x, tracks, crops=True, seed=0, z=z)
    rows = sel._train_rows(table, tracks, crops=True)
    fitted = sel._fit_lr(x[rows], table.y[rows], c, z=None if z is None else z[rows])
    if not prior:
        assert list(fitted.model.classes_) == list(range(len(sel.GENRES))), "every genre has training tracks"
    options = {"inputs": inputs, "prior": prior, "labels": list(sel.GENRES)}
    model = build_model("musicnn-linear", (musicnn.EMBEDDING_DIM,), len(sel.GENRES), **options)
    with torch.no_grad():
        model.mean.copy_(torch.from_numpy(fitted.scaler.mean_))
        model.scale.copy_(torch.from_numpy(fitted.scaler.scale_))
        model.linear.weight.copy_(torch.from_numpy(fitted.model.coef_ / temperature))
        model.linear.bias.copy_(torch.from_numpy(fitted.model.intercept_ / temperature))
        model.beta.fill_(getattr(fitted.model, "beta_", 0.0) / temperature)
    # The converted model must give the fitted model's probabilities (at temperature 1, up to the division).
    probe = rows[:: max(1, len(rows) // 200)]
    with torch.no_grad():
        logits = model.eval()(torch.from_numpy(table.embedding[probe])).double().numpy() * temperature
    np.testing.assert_allclose(np.exp(logits - np.logaddexp.reduce(logits, axis=1, keepdims=True)),
                               np.exp(fitted.log_proba(x[probe], None if z is None else z[probe])), atol=1e-4)
    config = musicnn.default_feature_config(audio=AudioConfig(sample_rate=musicnn.SAMPLE_RATE))
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return Checkpoint("musicnn-linear", options, state, list(sel.GENRES), config), c


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--embeddings", type=Path, default=Path("runs/selection/embeddings.npz"))
    parser.add_argument("--selection", type=Path, default=Path("runs/selection/selection.json"))
    args = parser.parse_args()
    selection = json.loads(args.selection.read_text())
    winner, results = selection["winner"], selection["results"]
    if winner not in RECIPES:
        raise SystemExit(f"the selected recipe {winner!r} has no musicnn-linear conversion here")
    cal = results[winner]["calibration"]
    table = sel.load_table(args.embeddings)
    ckpt, c = fit_default(table, winner, cal["temperature"])
    data = training_data(table)
    card = figures(results[winner])
    meta = {
        "description": f"{winner}: logistic regression over musicnn's {RECIPES[winner][0].replace('+', ' and ')}"
                       f"{' plus the zero-shot tag prior' if RECIPES[winner][1] else ''} (frozen MSD + MTT musicnn)",
        "training_data": data,
        "recipe": {"name": winner, "C": c, "crops_per_clip": 3, "segment_seconds": 3.0},
        "validation": card,
        "calibration": {k: cal[k] for k in ("temperature", "ece_before", "ece_after", "uncertain_below")},
    }
    WEIGHTS.mkdir(parents=True, exist_ok=True)
    save_checkpoint(Checkpoint(**{**ckpt.__dict__, "metadata": meta}), WEIGHTS / "default.pt")

    zs = results["zero-shot"]
    zero = build_model("musicnn-zero-shot", (musicnn.EMBEDDING_DIM,), len(sel.GENRES), labels=sel.GENRES)
    zs_meta = {
        "description": "zero-shot: each genre scored by one musicnn tag (no training; no disco or reggae tag, so never those)",
        "training_data": {"dataset": "none (musicnn's own MSD and MTT tags)"},
        "validation": figures(zs),
    }
    save_checkpoint(
        Checkpoint("musicnn-zero-shot", {"labels": list(sel.GENRES)}, zero.state_dict(), list(sel.GENRES), ckpt.feature_config, metadata=zs_meta),
        WEIGHTS / "zero-shot.pt",
    )
    shipped_ece = cal["ece_before"] if cal["temperature"] == 1.0 else cal["ece_after"]
    lo, hi = card["track_accuracy_ci95"]
    mlo, mhi = card["macro_recall_ci95"]
    z = figures(zs)
    lines = [
        "# The shipped default model",
        "",
        "Produced by `scripts/train_default_model.py` from the decision of `scripts/select_default_model.py` "
        "(see `reports/model_selection.md`).",
        "",
        f"- Model: `{winner}` as `musicnn-linear` (inputs: {RECIPES[winner][0]}, zero-shot prior: {'yes' if RECIPES[winner][1] else 'no'}), "
        f"C = {c:g} (artist-grouped inner CV), "
        f"temperature {cal['temperature']:.2f}, `uncertain` below a top probability of {cal['uncertain_below']:.2f}.",
        f"- Trained on {data['n_clips']} fault-free real GTZAN dev clips, {data['n_excerpts']} scarce-genre excerpts and "
        f"{data['n_crops']} short crops ({data['n_artists']} artists).",
        "",
        "| model | protocol | tracks | track accuracy [95% CI] | macro recall [95% CI] | ECE |",
        "|---|---|---|---|---|---|",
        f"| default ({winner}) | {PROTOCOL} | {card['n_tracks']} | {card['track_accuracy']:.3f} [{lo:.3f}, {hi:.3f}] | "
        f"{card['macro_recall']:.3f} [{mlo:.3f}, {mhi:.3f}] | {shipped_ece:.3f} |",
        f"| zero-shot | same | {z['n_tracks']} | {z['track_accuracy']:.3f} [{z['track_accuracy_ci95'][0]:.3f}, {z['track_accuracy_ci95'][1]:.3f}] | "
        f"{z['macro_recall']:.3f} [{z['macro_recall_ci95'][0]:.3f}, {z['macro_recall_ci95'][1]:.3f}] | {z['ece']:.3f} |",
        f"| default ({winner}) | {card['second_view']['protocol']} | {card['second_view']['n_tracks']} | "
        f"{card['second_view']['track_accuracy']:.3f} [{card['second_view']['track_accuracy_ci95'][0]:.3f}, "
        f"{card['second_view']['track_accuracy_ci95'][1]:.3f}] | {card['second_view']['macro_recall']:.3f} | |",
    ]
    Path("reports/default_model.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
