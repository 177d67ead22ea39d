"""Choose the shipped model by a protocol fixed before its results were seen; writes reports/model_selection.md.

Data: the fault-free real dev clips (those in the fault-filtered lists) and the scarce-genre excerpts, as
musicnn embeddings from ``scripts/dev_embeddings.py`` (cached). Every candidate is trained on 3 s segments
of clips (the ``predict`` grid), the excerpts (one padded segment each) and short padded crops of every
clip, and predicts a track by averaging its segment probabilities, as ``predict`` does.

Protocol (written down before any result below was computed)
------------------------------------------------------------
- **Primary view**: artist-grouped stratified 5-fold cross-validation over all tracks (clips and excerpts;
  groups: artists from Sturm's index, so no artist is in both training and test), repeated with 3 seeds.
  A track's correctness is averaged over seeds; accuracy and macro recall (mean per-genre recall) get
  95 % bootstrap intervals over tracks (1000 resamples). Log-loss, expected calibration error (ECE, 15
  bins of the top probability) and macro-F1 are averaged over seeds.
- **Second view**: the artist-disjoint fault-filtered lists, swapped both ways (train on filtered-train,
  test filtered-valid; then the reverse), pooled.
- **Hyperparameters** (the inverse regularization ``C`` of the logistic regressions) are chosen on the
  training side only, by artist-grouped 3-fold inner cross-validation, minimizing track log-loss.
- **Rule**: candidates are listed simplest first. The winner is the simplest trained candidate whose
  primary-view accuracy and macro recall both reach the lower 95 % bound of the best candidate on that
  metric, and which beats the zero-shot mapping on both.
- **Calibration**: one temperature on the winner's segment log-probabilities, fitted on out-of-fold
  predictions (track log-loss); ECE before and after is cross-fitted (the temperature applied to a fold
  is fitted on the other folds). The ``uncertain`` threshold is the largest calibrated top probability
  below which the out-of-fold tracks are right at most half of the time.
- **Overlap**: the winner also predicts the clips from segments every 1.5 s instead of 3 s; overlapping
  windows become the default only if that raises primary-view accuracy beyond the 3 s interval.
- **Short input**: held-out 2-3 s crops of pop, rock, jazz and classical clips must not go to the six
  scarce genres more often than those clips' full 3 s segments do.

Amendments (made after the first results were seen, and why)
-------------------------------------------------------------
1. The short-input check as written could not be met by any candidate, the zero-shot mapping included
   (its broad-genre crops went to a scarce genre 4.8 % of the time against 2.6 % for their segments):
   a 2 s crop carries less evidence than 3 s. It became an eligibility bound that names the failure the
   rule exists for: a candidate is eligible only if at most 10 % of held-out pop, rock, jazz and
   classical crops, and of their 3 s segments, go to a scarce genre. Without it the rule picked the
   no-crops ablation (39 % of such crops) and, without that, the previous head (27 % of such full segments: the
   "pushes music towards the rare genres" of the issue that asked for this selection).
2. Overlapping windows are compared with the interval of the clips' accuracy at 3 s, not with the
   interval of all tracks (excerpts have one segment whatever the hop).
3. Three candidates were added (marked below): balanced class weights, and the zero-shot scores as a
   prior inside the regression, after the first results showed blues recall of 0.15-0.20 for the trained
   models against 0.65 for zero-shot. Every candidate ever run is in the tables.
4. Temperature scaling minimizes log-loss; for the first winner it raised the cross-fitted ECE
   (0.037 -> 0.072): a few confidently wrong tracks dominate the log-loss, and softening every track for
   them makes the typical one under-confident. The temperature is now kept only where it lowers the
   cross-fitted ECE, and the threshold is read off the probabilities that ship.

    .venv/bin/python scripts/select_default_model.py [--jobs 2]     # ~20 min on 2 busy cores, embeddings cached

Writes ``reports/model_selection.md`` and ``runs/selection/selection.json`` (read by
``scripts/train_default_model.py``).
"""

from __future__ import annotations

import argparse
import json
import pickle
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from joblib import Parallel, delayed
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.preprocessing import StandardScaler

sys.path.insert(0, str(Path(__file__).resolve().parent))
import dev_embeddings

from genrekit.features import musicnn
from genrekit.models.musicnn_linear import ZERO_SHOT_TAGS
from genrekit.datasets.splits import filtered_lists

GENRES = ("blues", "classical", "country", "disco", "hiphop", "jazz", "metal", "pop", "reggae", "rock")
SCARCE = ("blues", "country", "disco", "hiphop", "metal", "reggae")
BROAD = ("classical", "jazz", "pop", "rock")
C_GRID = (0.003, 0.01, 0.03, 0.1, 0.3)
N_FOLDS, N_SEEDS, N_INNER = 5, 3, 3
N_BOOTSTRAP = 1000
ECE_BINS = 15


# ----------------------------------------------------------------------------------------------- data
@dataclass(frozen=True)
class Table:
    """Segments of the dev tracks with every derived input a candidate may use."""

    embedding: np.ndarray  # (n, 3412) as stored
    penultimate: np.ndarray  # (n, 400): MSD then MTT
    tag_logits: np.ndarray  # (n, 100): MSD's 50 tags then MTT's 50
    track: np.ndarray
    y: np.ndarray  # genre index
    artist: np.ndarray
    kind: np.ndarray  # clip | excerpt | crop
    on_grid: np.ndarray  # a clip segment on the 3 s grid that predict uses (excerpts: True)


def penultimate_columns() -> np.ndarray:
    cols, lo = [], 0
    for model, layer, size in musicnn.EMBEDDING_LAYOUT:
        if layer == "penultimate":
            cols.append(np.arange(lo, lo + size))
        lo += size
    return np.concatenate(cols)


def tag_layer() -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Block-diagonal (100, 400) weight and bias mapping both penultimates to the 100 tag logits."""
    nets = [musicnn.load_musicnn(m) for m in musicnn.MODELS]
    weight = torch.block_diag(*(n.output.weight for n in nets)).numpy()
    bias = torch.cat([n.output.bias for n in nets]).numpy()
    names = [f"{m}:{t}" for m, n in zip(musicnn.MODELS, nets) for t in n.tags]
    return weight, bias, names


def load_table(path: Path) -> Table:
    raw = dev_embeddings.load(path)
    listed = {t for ids in filtered_lists().values() for t in ids}
    keep = np.isin(raw["track_id"], sorted(listed))  # drop GTZAN's faulty clips (duplicates, mislabels)
    emb = raw["emb"][keep].astype(np.float32)
    pen = emb[:, penultimate_columns()]
    weight, bias, _ = tag_layer()
    kind = raw["kind"][keep]
    on_grid = (kind == "excerpt") | ((kind == "clip") & (np.round(raw["start_s"][keep] / 3.0, 6) % 1 == 0))
    return Table(
        embedding=emb, penultimate=pen, tag_logits=pen @ weight.T + bias, track=raw["track_id"][keep],
        y=np.array([GENRES.index(g) for g in raw["genre"][keep]]), artist=raw["artist"][keep], kind=kind, on_grid=on_grid,
    )


# ------------------------------------------------------------------------------------------ candidates
def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def zero_shot_scores(tag_logits: np.ndarray) -> np.ndarray:
    """Mapped tag score per genre (segments x 10); genres without a tag get 0."""
    _, _, names = tag_layer()
    out = np.zeros((len(tag_logits), len(GENRES)))
    for j, genre in enumerate(GENRES):
        tag = ZERO_SHOT_TAGS[genre]
        if tag:
            out[:, j] = _sigmoid(tag_logits[:, names.index(tag)])
    return out


def inputs(table: Table, name: str) -> np.ndarray:
    if name == "tags":
        return table.tag_logits
    if name == "penultimate+tags":
        return np.hstack([table.penultimate, _sigmoid(table.tag_logits)])
    if name == "embedding":
        return table.embedding
    raise ValueError(name)


def track_vote(probs: np.ndarray, track: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Soft vote per track: mean segment probability, renormalized (tracks in sorted order)."""
    names, inverse = np.unique(track, return_inverse=True)
    sums = np.zeros((len(names), probs.shape[1]))
    np.add.at(sums, inverse, probs)
    sums /= sums.sum(axis=1, keepdims=True)
    return names, sums


def track_log_loss(probs: np.ndarray, y: np.ndarray) -> float:
    return float(-np.log(np.clip(probs[np.arange(len(y)), y], 1e-7, 1)).mean())


def zero_shot_prior(tag_logits: np.ndarray) -> np.ndarray:
    """Log score of each genre's tag (0 for a genre without one; the intercept absorbs it)."""
    scores = zero_shot_scores(tag_logits)
    mapped = np.array([ZERO_SHOT_TAGS[g] is not None for g in GENRES])
    return np.log(np.where(mapped, np.maximum(scores, 1e-6), 1.0))


class PriorLR:
    """Multinomial logistic regression whose logits add ``beta`` times the zero-shot prior:
    ``W x + b + beta * z``. ``W`` gets scikit-learn's L2 penalty (``C * sum(loss) + |W|^2 / 2``); ``b`` and the
    one scalar ``beta`` are free, so the data decide how far to trust the tag mapping and ``W`` learns corrections."""

    def __init__(self, c: float) -> None:
        self.c = c

    def fit(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> PriorLR:
        xt, zt, yt = torch.from_numpy(x).double(), torch.from_numpy(z).double(), torch.from_numpy(y).long()
        w = torch.zeros(x.shape[1], len(GENRES), dtype=torch.float64, requires_grad=True)
        b = torch.zeros(len(GENRES), dtype=torch.float64, requires_grad=True)
        beta = torch.ones((), dtype=torch.float64, requires_grad=True)
        opt = torch.optim.LBFGS([w, b, beta], max_iter=300, line_search_fn="strong_wolfe", tolerance_grad=1e-6)

        def closure() -> torch.Tensor:
            opt.zero_grad()
            loss = self.c * torch.nn.functional.cross_entropy(xt @ w + b + beta * zt, yt, reduction="sum") + 0.5 * w.square().sum()
            loss.backward()
            return loss

        opt.step(closure)
        self.coef_, self.intercept_, self.beta_ = w.detach().numpy().T, b.detach().numpy(), float(beta.detach())
        return self

    def log_proba(self, x: np.ndarray, z: np.ndarray) -> np.ndarray:
        logits = x @ self.coef_.T + self.intercept_ + self.beta_ * z
        return logits - np.logaddexp.reduce(logits, axis=1, keepdims=True)


@dataclass(frozen=True)
class Fitted:
    scaler: StandardScaler
    model: LogisticRegression | PriorLR

    def log_proba(self, x: np.ndarray, z: np.ndarray | None = None) -> np.ndarray:
        if isinstance(self.model, PriorLR):
            return self.model.log_proba(self.scaler.transform(x), z)
        out = np.full((len(x), len(GENRES)), -30.0)  # a genre absent from training gets ~0
        out[:, self.model.classes_] = self.model.predict_log_proba(self.scaler.transform(x))
        return out


def _fit_lr(x: np.ndarray, y: np.ndarray, c: float, *, balanced: bool = False, z: np.ndarray | None = None) -> Fitted:
    scaler = StandardScaler().fit(x)
    if z is not None:
        return Fitted(scaler, PriorLR(c).fit(scaler.transform(x), y, z))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        lr = LogisticRegression(C=c, max_iter=300, class_weight="balanced" if balanced else None)
        return Fitted(scaler, lr.fit(scaler.transform(x), y))


def _lr_log_proba(model: Fitted, x: np.ndarray, z: np.ndarray | None = None) -> np.ndarray:
    return model.log_proba(x, z)


def _train_rows(table: Table, train_tracks: np.ndarray, *, crops: bool) -> np.ndarray:
    rows = np.isin(table.track, train_tracks) & (table.on_grid | (crops & (table.kind == "crop")))
    return np.flatnonzero(rows)


def _inner_c(
    table: Table, x: np.ndarray, train_tracks: np.ndarray, *, crops: bool, seed: int, balanced: bool = False, z: np.ndarray | None = None
) -> float:
    """C by artist-grouped inner CV on the training tracks (track log-loss of the soft vote)."""
    first = {t: i for i, t in reversed(list(enumerate(table.track)))}
    y_t = table.y[[first[t] for t in train_tracks]]
    groups = table.artist[[first[t] for t in train_tracks]]
    folds = StratifiedGroupKFold(N_INNER, shuffle=True, random_state=seed).split(train_tracks, y_t, groups)
    losses = np.zeros(len(C_GRID))
    for fit_idx, val_idx in folds:
        fit_rows = _train_rows(table, train_tracks[fit_idx], crops=crops)
        val_rows = np.flatnonzero(np.isin(table.track, train_tracks[val_idx]) & table.on_grid)
        for k, c in enumerate(C_GRID):
            model = _fit_lr(x[fit_rows], table.y[fit_rows], c, balanced=balanced, z=None if z is None else z[fit_rows])
            names, probs = track_vote(np.exp(_lr_log_proba(model, x[val_rows], None if z is None else z[val_rows])), table.track[val_rows])
            losses[k] += track_log_loss(probs, table.y[[first[t] for t in names]])
    return C_GRID[int(np.argmin(losses))]


@dataclass(frozen=True)
class Candidate:
    """A recipe: ``fit(table, train_tracks, seed)`` returns a function from row indices to segment log-probabilities."""

    name: str
    description: str
    fit: Callable[[Table, np.ndarray, int], Callable[[np.ndarray], np.ndarray]]
    trained: bool = True


def zero_shot(table: Table, train_tracks: np.ndarray, seed: int) -> Callable[[np.ndarray], np.ndarray]:
    scores = zero_shot_scores(table.tag_logits)

    def predict(rows: np.ndarray) -> np.ndarray:
        # Raw mapped scores: the soft vote's mean then argmax equals the zero-shot script's rule.
        return np.log(np.maximum(scores[rows], 1e-3))

    return predict


def segment_lr(
    features: str, *, crops: bool = True, balanced: bool = False, prior: bool = False
) -> Callable[[Table, np.ndarray, int], Callable[[np.ndarray], np.ndarray]]:
    def fit(table: Table, train_tracks: np.ndarray, seed: int) -> Callable[[np.ndarray], np.ndarray]:
        x = inputs(table, features)
        z = zero_shot_prior(table.tag_logits) if prior else None
        c = _inner_c(table, x, train_tracks, crops=crops, seed=seed, balanced=balanced, z=z)
        rows = _train_rows(table, train_tracks, crops=crops)
        model = _fit_lr(x[rows], table.y[rows], c, balanced=balanced, z=None if z is None else z[rows])
        predict = lambda r: _lr_log_proba(model, x[r], None if z is None else z[r])  # noqa: E731
        predict.c = c  # type: ignore[attr-defined]  # recorded in the report
        return predict

    return fit


def product_of_experts(table: Table, train_tracks: np.ndarray, seed: int) -> Callable[[np.ndarray], np.ndarray]:
    """The penultimate+tags head times the zero-shot scores (a genre without a tag gets a neutral factor)."""
    head = segment_lr("penultimate+tags")(table, train_tracks, seed)
    scores = zero_shot_scores(table.tag_logits)
    mapped = [j for j, g in enumerate(GENRES) if ZERO_SHOT_TAGS[g]]

    def predict(rows: np.ndarray) -> np.ndarray:
        z = np.log(np.maximum(scores[rows], 1e-3))
        neutral = z[:, mapped].mean(axis=1, keepdims=True)
        z[:, [j for j in range(len(GENRES)) if j not in mapped]] = neutral
        logp = head(rows) + z
        return logp - np.logaddexp.reduce(logp, axis=1, keepdims=True)

    return predict


def todays_head(table: Table, train_tracks: np.ndarray, seed: int) -> Callable[[np.ndarray], np.ndarray]:
    """The recipe of the previous default: dropout + linear over the standardized 3412-d embedding,
    balanced class weights, label smoothing 0.1, Adam 1e-3, 30 epochs, batch 64."""
    from genrekit.models.musicnn_head import MusicnnHead

    rows = _train_rows(table, train_tracks, crops=True)
    x = table.embedding
    mean, std = x[rows].mean(axis=0), x[rows].std(axis=0)
    std[std == 0] = 1.0
    xt = torch.from_numpy((x[rows] - mean) / std).float()
    yt = torch.from_numpy(table.y[rows]).long()
    counts = np.bincount(table.y[rows], minlength=len(GENRES)).astype(float)
    weight = torch.tensor(np.where(counts > 0, len(rows) / (len(GENRES) * np.maximum(counts, 1)), 0.0), dtype=torch.float32)
    torch.manual_seed(seed)
    net = MusicnnHead(x.shape[1], len(GENRES))
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(30):
        net.train()
        for batch in torch.randperm(len(rows), generator=gen).split(64):
            loss = torch.nn.functional.cross_entropy(net(xt[batch]), yt[batch], weight=weight, label_smoothing=0.1)
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.eval()

    def predict(r: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return torch.log_softmax(net(torch.from_numpy((x[r] - mean) / std).float()), dim=1).numpy()

    return predict


def pooled_lr(table: Table, train_tracks: np.ndarray, seed: int) -> Callable[[np.ndarray], np.ndarray]:
    """Logistic regression on track-pooled inputs: mean and std of the penultimates plus mean tag scores.
    Each crop is pooled on its own, like an excerpt."""
    feats = np.hstack([table.penultimate, _sigmoid(table.tag_logits)])
    unit = np.where(table.kind == "crop", np.char.add(np.char.add(table.track, "#"), np.arange(len(table.track)).astype(str)), table.track)

    def pool(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Pooled inputs per unit, the first row of each unit, and each row's unit."""
        names, first, inverse = np.unique(unit[rows], return_index=True, return_inverse=True)
        out = np.zeros((len(names), feats.shape[1] + table.penultimate.shape[1]))
        for i in range(len(names)):
            f = feats[rows[inverse == i]]
            out[i] = np.concatenate([f.mean(axis=0), f[:, : table.penultimate.shape[1]].std(axis=0)])
        return out, rows[first], inverse

    train = _train_rows(table, train_tracks, crops=True)
    x, first, _ = pool(train)
    y, groups = table.y[first], table.artist[first]
    best, best_loss = C_GRID[0], np.inf
    for c in C_GRID:
        loss = 0.0
        for fit_idx, val_idx in StratifiedGroupKFold(N_INNER, shuffle=True, random_state=seed).split(x, y, groups):
            model = _fit_lr(x[fit_idx], y[fit_idx], c)
            loss += track_log_loss(np.exp(_lr_log_proba(model, x[val_idx])), y[val_idx])
        if loss < best_loss:
            best, best_loss = c, loss
    model = _fit_lr(x, y, best)

    def predict(rows: np.ndarray) -> np.ndarray:
        pooled, _, inverse = pool(rows)
        return _lr_log_proba(model, pooled)[inverse]  # every segment of a track carries the track's prediction

    return predict


CANDIDATES = (
    Candidate("zero-shot", "musicnn tag mapping, no training (no disco or reggae tag)", zero_shot, trained=False),
    Candidate("tags-lr", "logistic regression on the 100 musicnn tag log-odds, per segment", segment_lr("tags")),
    Candidate("tags-lr, balanced", "the same with balanced class weights (added after the first results)", segment_lr("tags", balanced=True)),
    Candidate("tags-lr + zero-shot prior", "tags-lr whose logits add beta x the zero-shot log scores, beta learned (added after the first results)",
              segment_lr("tags", prior=True)),
    Candidate("penultimate+tags-lr", "logistic regression on both penultimates (400) + tag scores (100), per segment", segment_lr("penultimate+tags")),
    Candidate("penultimate+tags-lr, no crops", "the same, trained without the short crops (ablation)", segment_lr("penultimate+tags", crops=False)),
    Candidate("penultimate+tags-lr + zero-shot prior", "penultimate+tags-lr with the zero-shot prior (added after the first results)",
              segment_lr("penultimate+tags", prior=True)),
    Candidate("pooled-lr", "logistic regression on track-pooled penultimate mean+std and mean tag scores", pooled_lr),
    Candidate("head+zero-shot", "penultimate+tags-lr times the zero-shot scores (product of experts)", product_of_experts),
    Candidate("today's head", "previous default: dropout + linear on the 3412-d embedding, balanced weights", todays_head),
)


# ---------------------------------------------------------------------------------------------- metrics
def ece(probs: np.ndarray, y: np.ndarray) -> float:
    conf, hit = probs.max(axis=1), probs.argmax(axis=1) == y
    bins = np.minimum((conf * ECE_BINS).astype(int), ECE_BINS - 1)
    return float(sum(abs(hit[bins == b].mean() - conf[bins == b].mean()) * (bins == b).mean() for b in np.unique(bins)))


def bootstrap(values: np.ndarray, stat: Callable[[np.ndarray], float], seed: int = 0) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    draws = [stat(rng.integers(0, len(values), len(values))) for _ in range(N_BOOTSTRAP)]
    return float(np.percentile(draws, 2.5)), float(np.percentile(draws, 97.5))


def summarize(y: np.ndarray, correct: np.ndarray, runs: list[tuple[np.ndarray, np.ndarray]]) -> dict:
    """``correct``: per-track correctness averaged over runs; ``runs``: (y, probs) per seed for the rest."""

    def macro(idx: np.ndarray) -> float:
        return float(np.mean([correct[idx][y[idx] == g].mean() for g in range(len(GENRES)) if (y[idx] == g).any()]))

    all_idx = np.arange(len(y))
    return {
        "n_tracks": int(len(y)),
        "accuracy": float(correct.mean()),
        "accuracy_ci95": bootstrap(correct, lambda i: float(correct[i].mean())),
        "macro_recall": macro(all_idx),
        "macro_recall_ci95": bootstrap(correct, macro),
        "macro_f1": float(np.mean([f1_score(yy, p.argmax(axis=1), average="macro", labels=range(len(GENRES))) for yy, p in runs])),
        "log_loss": float(np.mean([track_log_loss(p, yy) for yy, p in runs])),
        "ece": float(np.mean([ece(p, yy) for yy, p in runs])),
        "recall": {g: float(correct[y == j].mean()) for j, g in enumerate(GENRES) if (y == j).any()},
    }


# ------------------------------------------------------------------------------------------- protocol
def outer_splits(table: Table) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(view, train tracks, test tracks) of both views."""
    tracks = np.unique(table.track[table.kind != "crop"])
    first = {t: i for i, t in reversed(list(enumerate(table.track)))}
    y = table.y[[first[t] for t in tracks]]
    groups = table.artist[[first[t] for t in tracks]]
    out = []
    for seed in range(N_SEEDS):
        for tr, te in StratifiedGroupKFold(N_FOLDS, shuffle=True, random_state=seed).split(tracks, y, groups):
            out.append((f"cv{seed}", tracks[tr], tracks[te]))
    lists = filtered_lists()
    train = np.array(sorted(set(tracks) & set(lists["train"])))
    valid = np.array(sorted(set(tracks) & set(lists["val"])))
    out += [("swap", train, valid), ("swap", valid, train)]
    return out


def run_fold(table: Table, candidate: Candidate, view: str, train: np.ndarray, test: np.ndarray, seed: int) -> dict:
    predict = candidate.fit(table, train, seed)
    in_test = np.isin(table.track, test)
    grid = np.flatnonzero(in_test & table.on_grid)
    dense = np.flatnonzero(in_test & (table.kind == "clip"))
    crops = np.flatnonzero(in_test & (table.kind == "crop"))
    return {
        "view": view,
        "c": getattr(predict, "c", None),
        "grid": (table.track[grid], predict(grid)),
        "dense": (table.track[dense], predict(dense)),
        "crops": (table.y[crops], predict(crops)),
        "grid_segments": (table.y[grid[table.kind[grid] == "clip"]], predict(grid[table.kind[grid] == "clip"])),
    }


def fit_temperature(logp: list[np.ndarray], tracks: list[np.ndarray], y_of: dict[str, int]) -> float:
    """One temperature for the segment log-probabilities, minimizing track log-loss of the soft vote."""
    grid = np.exp(np.linspace(np.log(0.25), np.log(4.0), 81))
    losses = []
    for t in grid:
        loss = 0.0
        for lp, tr in zip(logp, tracks):
            p = np.exp(lp / t)
            names, probs = track_vote(p / p.sum(axis=1, keepdims=True), tr)
            loss += track_log_loss(probs, np.array([y_of[n] for n in names])) * len(names)
        losses.append(loss)
    return float(grid[int(np.argmin(losses))])


def evaluate(table: Table, candidate: Candidate, folds: list[dict]) -> dict:
    y_of = {t: int(yy) for t, yy in zip(table.track, table.y)}
    result = {}
    for view in ("cv", "swap"):
        mine = [f for f in folds if f["view"].startswith(view)]
        seeds = sorted({f["view"] for f in mine})
        per_seed = []
        for s in seeds:
            tr = np.concatenate([f["grid"][0] for f in mine if f["view"] == s])
            lp = np.concatenate([f["grid"][1] for f in mine if f["view"] == s])
            names, probs = track_vote(np.exp(lp), tr)
            per_seed.append((names, probs))
        names = per_seed[0][0]
        y = np.array([y_of[n] for n in names])
        correct = np.mean([p.argmax(axis=1) == y for _, p in per_seed], axis=0)
        result[view] = summarize(y, correct, [(y, p) for _, p in per_seed])
        excerpt = np.array([n in set(table.track[table.kind == "excerpt"]) for n in names])
        result[view]["clips_accuracy"] = float(correct[~excerpt].mean())
        clip_correct = correct[~excerpt]
        result[view]["clips_accuracy_ci95"] = bootstrap(clip_correct, lambda i: float(clip_correct[i].mean()))
        result[view]["excerpts_accuracy"] = float(correct[excerpt].mean())
    cv = [f for f in folds if f["view"].startswith("cv")]
    # overlap: the same models, clips predicted from segments every 1.5 s
    hits = []
    for s in sorted({f["view"] for f in cv}):
        tr = np.concatenate([f["dense"][0] for f in cv if f["view"] == s])
        names, probs = track_vote(np.exp(np.concatenate([f["dense"][1] for f in cv if f["view"] == s])), tr)
        hits.append(probs.argmax(axis=1) == np.array([y_of[n] for n in names]))
    result["overlap_clips_accuracy"] = float(np.mean(hits))
    # short input: held-out crops and 3 s segments of the broad genres routed to a scarce genre
    scarce = [GENRES.index(g) for g in SCARCE]
    broad = [GENRES.index(g) for g in BROAD]
    yc = np.concatenate([f["crops"][0] for f in cv])
    pc = np.concatenate([f["crops"][1] for f in cv]).argmax(axis=1)
    ys = np.concatenate([f["grid_segments"][0] for f in cv])
    ps = np.concatenate([f["grid_segments"][1] for f in cv]).argmax(axis=1)
    result["crops_accuracy"] = float((yc == pc).mean())
    result["broad_crops_to_scarce"] = float(np.isin(pc[np.isin(yc, broad)], scarce).mean())
    result["broad_segments_to_scarce"] = float(np.isin(ps[np.isin(ys, broad)], scarce).mean())
    result["c_chosen"] = sorted({f["c"] for f in folds if f["c"] is not None})
    if candidate.trained:
        result["calibration"] = calibrate(cv, y_of)
    return result


def calibrate(cv: list[dict], y_of: dict[str, int]) -> dict:
    """Cross-fitted temperature (per fold, fitted on the other folds of its seed), ECE before/after, threshold.

    Amendment 4: the temperature is kept only where it lowers the cross-fitted ECE; otherwise the model
    ships at temperature 1 and the threshold is read off its uncalibrated out-of-fold probabilities."""
    before, after, conf_hit, raw_hit = [], [], [], []
    for s in sorted({f["view"] for f in cv}):
        mine = [f for f in cv if f["view"] == s]
        lp_all, tr_all = [], []
        for k, f in enumerate(mine):
            others = [g for j, g in enumerate(mine) if j != k]
            t = fit_temperature([g["grid"][1] for g in others], [g["grid"][0] for g in others], y_of)
            p = np.exp(f["grid"][1] / t)
            lp_all.append(p / p.sum(axis=1, keepdims=True))
            tr_all.append(f["grid"][0])
        tr = np.concatenate(tr_all)
        names, cal = track_vote(np.concatenate(lp_all), tr)
        names0, raw = track_vote(np.exp(np.concatenate([f["grid"][1] for f in mine])), np.concatenate([f["grid"][0] for f in mine]))
        y = np.array([y_of[n] for n in names])
        before.append(ece(raw, y))
        after.append(ece(cal, y))
        conf_hit.append(np.stack([cal.max(axis=1), cal.argmax(axis=1) == y], axis=1))
        raw_hit.append(np.stack([raw.max(axis=1), raw.argmax(axis=1) == y], axis=1))
    fitted = fit_temperature([f["grid"][1] for f in cv], [f["grid"][0] for f in cv], y_of)
    applied = np.mean(after) < np.mean(before)
    temperature = fitted if applied else 1.0
    ch = np.concatenate(conf_hit if applied else raw_hit)
    ch = ch[np.argsort(ch[:, 0])]
    running = np.cumsum(ch[:, 1]) / np.arange(1, len(ch) + 1)
    below = np.flatnonzero(running <= 0.5)
    threshold = float(ch[below[-1], 0]) if len(below) else 0.0
    flagged = ch[:, 0] < threshold
    return {
        "temperature": temperature,
        "fitted_temperature": fitted,
        "ece_before": float(np.mean(before)),
        "ece_after": float(np.mean(after)),
        "uncertain_below": round(threshold, 3),
        "flagged_fraction": float(flagged.mean()),
        "flagged_accuracy": float(ch[flagged, 1].mean()) if flagged.any() else None,
        "unflagged_accuracy": float(ch[~flagged, 1].mean()),
    }


SHORT_INPUT_BOUND = 0.10


def eligible(result: dict) -> bool:
    """Amendment 1: short input and broad genres must not mean "scarce genre"."""
    return max(result["broad_crops_to_scarce"], result["broad_segments_to_scarce"]) <= SHORT_INPUT_BOUND


def choose(results: dict[str, dict]) -> str:
    trained = [c for c in CANDIDATES if c.trained and eligible(results[c.name])]
    zs = results["zero-shot"]["cv"]
    best = {m: max(trained, key=lambda c: results[c.name]["cv"][m]) for m in ("accuracy", "macro_recall")}
    for c in trained:  # simplest first
        r = results[c.name]["cv"]
        if all(r[m] >= results[best[m].name]["cv"][f"{m}_ci95"][0] and r[m] > zs[m] for m in ("accuracy", "macro_recall")):
            return c.name
    raise SystemExit("no candidate beats the zero-shot mapping: nothing to ship")


# ---------------------------------------------------------------------------------------------- report
def pct(x: float) -> str:
    return f"{x:.3f}"


def write_report(results: dict[str, dict], winner: str, table: Table, out: Path) -> None:
    n_clips = len(np.unique(table.track[table.kind == "clip"]))
    n_excerpts = len(np.unique(table.track[table.kind == "excerpt"]))
    doc = (__doc__ or "").split("Protocol (written down")[1].split("    .venv/bin/python")[0]
    lines = [
        "# Model selection for the shipped default",
        "",
        "Produced by `scripts/select_default_model.py` (about 25 min on 2 busy cores; `--reuse` rebuilds it from the "
        f"cached fold predictions in seconds). Data: {n_clips} fault-free real GTZAN dev clips "
        f"and {n_excerpts} scarce-genre excerpts ({len(np.unique(table.artist))} artists), as musicnn embeddings "
        "(`scripts/dev_embeddings.py`); training also uses 3 short padded crops of every training clip.",
        "",
        "## Protocol (written down before any result below was computed)"
        + doc.split("-" * 60, 1)[1].rstrip().replace("Amendments (made after", "## Amendments (made after").replace("\n" + "-" * 61 + "\n", "\n\n"),
        "",
        "## Candidates, simplest first",
        "",
        "| candidate | what it is |",
        "|---|---|",
        *[f"| {c.name} | {c.description} |" for c in CANDIDATES],
        "",
        f"## Primary view: artist-grouped {N_FOLDS}-fold CV x {N_SEEDS} seeds ({results['zero-shot']['cv']['n_tracks']} tracks)",
        "",
        "| candidate | track accuracy [95% CI] | macro recall [95% CI] | macro-F1 | log-loss | ECE | clips | excerpts | C chosen |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for c in CANDIDATES:
        r = results[c.name]["cv"]
        mark = " **(winner)**" if c.name == winner else ""
        lines.append(
            f"| {c.name}{mark} | {pct(r['accuracy'])} [{pct(r['accuracy_ci95'][0])}, {pct(r['accuracy_ci95'][1])}] | "
            f"{pct(r['macro_recall'])} [{pct(r['macro_recall_ci95'][0])}, {pct(r['macro_recall_ci95'][1])}] | {pct(r['macro_f1'])} | "
            f"{r['log_loss']:.3f} | {r['ece']:.3f} | {pct(r['clips_accuracy'])} | {pct(r['excerpts_accuracy'])} | "
            f"{', '.join(f'{x:g}' for x in results[c.name]['c_chosen']) or '-'} |"
        )
    lines += ["", "Per-genre recall (primary view):", "", "| candidate | " + " | ".join(GENRES) + " |", "|---|" + "---|" * len(GENRES)]
    for c in CANDIDATES:
        rec = results[c.name]["cv"]["recall"]
        lines.append(f"| {c.name} | " + " | ".join(f"{rec[g]:.2f}" for g in GENRES) + " |")
    swap_n = results["zero-shot"]["swap"]["n_tracks"]
    lines += [
        "",
        f"## Second view: fault-filtered train <-> valid lists, swapped both ways ({swap_n} tracks, artist-disjoint)",
        "",
        "| candidate | track accuracy [95% CI] | macro recall [95% CI] | macro-F1 | log-loss | ECE |",
        "|---|---|---|---|---|---|",
    ]
    for c in CANDIDATES:
        r = results[c.name]["swap"]
        lines.append(
            f"| {c.name} | {pct(r['accuracy'])} [{pct(r['accuracy_ci95'][0])}, {pct(r['accuracy_ci95'][1])}] | "
            f"{pct(r['macro_recall'])} [{pct(r['macro_recall_ci95'][0])}, {pct(r['macro_recall_ci95'][1])}] | {pct(r['macro_f1'])} | "
            f"{r['log_loss']:.3f} | {r['ece']:.3f} |"
        )
    lines += [
        "",
        "## Short input and overlapping windows (primary view, held-out tracks)",
        "",
        "| candidate | crop accuracy | pop/rock/jazz/classical crops -> scarce genre | their 3 s segments -> scarce genre | eligible | clips, 3 s hop | clips, 1.5 s hop |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in CANDIDATES:
        r = results[c.name]
        lines.append(
            f"| {c.name} | {pct(r['crops_accuracy'])} | {pct(r['broad_crops_to_scarce'])} | {pct(r['broad_segments_to_scarce'])} | "
            f"{'yes' if eligible(r) else 'no'} | "
            f"{pct(r['cv']['clips_accuracy'])} | {pct(r['overlap_clips_accuracy'])} |"
        )
    w = results[winner]
    cal = w["calibration"]
    lo, hi = w["cv"]["accuracy_ci95"]
    overlap_helps = w["overlap_clips_accuracy"] > w["cv"]["clips_accuracy_ci95"][1]
    lines += [
        "",
        "## Decision",
        "",
        f"- **Winner: {winner}** by the rule above (simplest eligible trained candidate within the best eligible candidate's "
        f"lower bounds on accuracy and macro recall, and above zero-shot on both): accuracy {pct(w['cv']['accuracy'])} [{pct(lo)}, {pct(hi)}] "
        f"vs zero-shot {pct(results['zero-shot']['cv']['accuracy'])}; macro recall {pct(w['cv']['macro_recall'])} vs "
        f"{pct(results['zero-shot']['cv']['macro_recall'])}.",
        f"- **Calibration**: the log-loss temperature is {cal['fitted_temperature']:.2f}; cross-fitted ECE {cal['ece_before']:.3f} "
        f"before, {cal['ece_after']:.3f} after, so the shipped temperature is {cal['temperature']:.2f}"
        + (" (amendment 4: it did not lower the ECE)." if cal["temperature"] == 1.0 else "."),
        f"- **Uncertain** below a top probability (as shipped) of {cal['uncertain_below']:.2f}: {cal['flagged_fraction']:.1%} of held-out "
        f"tracks are flagged; accuracy {cal['flagged_accuracy'] if cal['flagged_accuracy'] is None else format(cal['flagged_accuracy'], '.3f')} "
        f"flagged vs {cal['unflagged_accuracy']:.3f} not flagged.",
        f"- **Overlapping windows**: clips from segments every 1.5 s score {pct(w['overlap_clips_accuracy'])} vs "
        f"{pct(w['cv']['clips_accuracy'])} [{pct(w['cv']['clips_accuracy_ci95'][0])}, {pct(w['cv']['clips_accuracy_ci95'][1])}] every 3 s; "
        + ("above the 3 s interval: the default hop becomes 1.5 s." if overlap_helps else
           "within the 3 s interval, so the default stays 3 s (half the compute)."),
    ]
    out.write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--embeddings", type=Path, default=Path("runs/selection/embeddings.npz"))
    parser.add_argument("--out", type=Path, default=Path("runs/selection/selection.json"))
    parser.add_argument("--report", type=Path, default=Path("reports/model_selection.md"))
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--only", nargs="*", help="candidate names (for a quick look; the report needs all)")
    parser.add_argument("--reuse", action="store_true", help="reuse the fold predictions cached by an earlier run")
    args = parser.parse_args()
    table = load_table(args.embeddings)
    splits = outer_splits(table)
    results = {}
    for c in CANDIDATES:
        if args.only and c.name not in args.only:
            continue
        t0 = time.perf_counter()
        cache = args.out.parent / f"folds-{''.join(ch if ch.isalnum() else '-' for ch in c.name)}.pkl"
        if args.reuse and cache.exists():
            folds = pickle.loads(cache.read_bytes())
        else:
            folds = Parallel(n_jobs=args.jobs)(delayed(run_fold)(table, c, v, tr, te, k) for k, (v, tr, te) in enumerate(splits))
            cache.parent.mkdir(parents=True, exist_ok=True)
            cache.write_bytes(pickle.dumps(folds))
        results[c.name] = evaluate(table, c, folds)
        r = results[c.name]["cv"]
        print(f"{c.name:32s} acc {r['accuracy']:.3f} {r['accuracy_ci95']} macro {r['macro_recall']:.3f} "
              f"swap {results[c.name]['swap']['accuracy']:.3f} ({time.perf_counter() - t0:.0f} s)", flush=True)
    if args.only:
        return
    winner = choose(results)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"winner": winner, "results": results}, indent=1, default=float))
    write_report(results, winner, table, args.report)
    print(f"winner: {winner}; wrote {args.report} and {args.out}")


if __name__ == "__main__":
    main()
