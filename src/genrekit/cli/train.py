"""``genrekit train``, ``genrekit evaluate`` and ``genrekit compare``: from a store to trained runs and honest reports."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from ..exceptions import GenrekitError
from .._text import words
from ._app import _options_of, add_commands, console, err_console, handle_errors, new_progress, progress_bar

if TYPE_CHECKING:
    from ..training.augment import AugmentConfig
    from ..evaluation.reports import CompareRow
    from ..training.config import TrainConfig

__all__ = ["register", "train", "evaluate", "compare"]

_AUGMENTATIONS = ("noise", "gain", "pitch", "specaugment")


@contextmanager
def _epoch_progress(epochs: int, force: bool) -> Iterator[Callable[[int, int, int], None]]:
    """Two bars: the current epoch's batches (ETA of the epoch) and the whole run (ETA of the run)."""
    with new_progress(force=force) as progress:
        epoch_task = progress.add_task("epoch", total=None)
        run_task = progress.add_task("run", total=epochs)
        current = [0]

        def update(epoch: int, batch: int, n_batches: int) -> None:
            if epoch != current[0]:
                current[0] = epoch
                progress.reset(epoch_task, total=n_batches, description=f"epoch {epoch}/{epochs}")
                progress.update(run_task, completed=epoch - 1)
            progress.update(epoch_task, completed=batch)
            if batch == n_batches:
                progress.update(run_task, completed=epoch)

        yield update


def _augment_config(augment: str, prob: float, mixup: float) -> AugmentConfig:
    """The AugmentConfig of the --augment/--augment-prob/--mixup options."""
    from .._params import Interval, check_values
    from ..training.augment import AugmentConfig
    from ..exceptions import ParameterError

    # Checked here: a probability that no enabled augmentation uses would otherwise pass unseen.
    check_values({"augment_prob": prob, "mixup": mixup}, {"augment_prob": Interval(0, 1, closed="both"), "mixup": Interval(0, None)})
    chosen = {a.strip() for a in augment.split(",") if a.strip()}
    unknown = chosen - set(_AUGMENTATIONS)
    if unknown:
        raise ParameterError(f"The '--augment' option takes a comma-separated subset of {', '.join(_AUGMENTATIONS)}. Got {', '.join(sorted(unknown))} instead.")
    p = {name: prob if name in chosen else 0.0 for name in _AUGMENTATIONS}
    return AugmentConfig(
        noise_prob=p["noise"], gain_prob=p["gain"], pitch_prob=p["pitch"],
        time_mask_prob=p["specaugment"], freq_mask_prob=p["specaugment"],
        mixup_prob=prob if mixup > 0 else 0.0, mixup_alpha=mixup if mixup > 0 else 0.2,
    )


def train(
    ctx: typer.Context,
    store: Annotated[Optional[Path], typer.Argument(metavar="STORE", help="Feature store made by `genrekit prepare` (not needed with --resume).")] = None,
    model: Annotated[str, typer.Option(metavar="cnn1|cnn2|musicnn-head", help="Architecture: cnn1 or cnn2 (the original's, on log-mel stores), or musicnn-head (on --features musicnn stores).")] = "cnn2",
    split: Annotated[str, typer.Option(metavar="filtered|random|kfold|leaky-segments", help="Split protocol: filtered (artist-aware GTZAN lists), random, kfold, or leaky-segments (the original's; inflated, labeled LEAKY).")] = "random",
    split_seed: Annotated[int, typer.Option(help="Seed of the split (random, kfold, leaky-segments).")] = 0,
    val_fraction: Annotated[float, typer.Option(help="Validation fraction (random, leaky-segments).")] = 0.2,
    test_fraction: Annotated[float, typer.Option(help="Test fraction (random, leaky-segments).")] = 0.0,
    n_folds: Annotated[int, typer.Option(help="Folds (kfold).")] = 10,
    fold: Annotated[int, typer.Option(help="Test fold; fold+1 is validation (kfold).")] = 0,
    epochs: Annotated[Optional[int], typer.Option(help="Epochs (default 40, the original's); with --resume, a new total.")] = None,
    batch_size: Annotated[int, typer.Option(help="Batch size (the original: 64).")] = 64,
    lr: Annotated[float, typer.Option(help="Adam learning rate (the original: 1e-4).")] = 1e-4,
    weight_decay: Annotated[float, typer.Option(help="Decoupled weight decay (AdamW); 0 = plain Adam.")] = 0.0,
    label_smoothing: Annotated[float, typer.Option(help="Label smoothing in [0, 1).")] = 0.0,
    class_weighting: Annotated[str, typer.Option(metavar="none|balanced", help="none, or balanced (loss weights against class imbalance).")] = "none",
    lr_schedule: Annotated[str, typer.Option(metavar="none|cosine|plateau", help="none, cosine or plateau.")] = "none",
    patience: Annotated[Optional[int], typer.Option(help="Early stopping: epochs without validation-loss improvement.")] = None,
    keep: Annotated[str, typer.Option(metavar="best|last", help="model.pt holds the best (lowest validation loss) or the last epoch.")] = "best",
    seed: Annotated[int, typer.Option(help="Training seed (init, data order, augmentation, dropout).")] = 0,
    augment: Annotated[str, typer.Option(metavar="LIST", help=f"Comma-separated on-the-fly augmentations: {', '.join(_AUGMENTATIONS)}.")] = "",
    augment_prob: Annotated[float, typer.Option(help="Probability of each augmentation per segment (and of mixup per batch).")] = 0.5,
    mixup: Annotated[float, typer.Option(help="Mixup Beta(alpha, alpha) parameter; 0 = off.")] = 0.0,
    threads: Annotated[Optional[int], typer.Option(help="torch CPU threads (default: torch's choice).")] = None,
    precision: Annotated[str, typer.Option(metavar="fp32|bf16", help="fp32, or bf16: bfloat16 autocast, ~1.5x faster on CPUs with native bf16 (same accuracy in benchmarks/bench_training.py).")] = "fp32",
    name: Annotated[Optional[str], typer.Option(metavar="NAME", help="Run folder name (default: UTC timestamp).")] = None,
    runs_dir: Annotated[Path, typer.Option(help="Where run folders go.")] = Path("runs"),
    resume: Annotated[Optional[Path], typer.Option(help="Continue this interrupted run folder (same seed, same result).")] = None,
    low_memory: Annotated[bool, typer.Option("--low-memory", metavar="", help="Give memory back to the system after every step: about 0.6x the peak (cnn2, batch 64: 1.8 instead of 3.0 GB) for ~1.25x slower steps, the same weights. For laptops.")] = False,
    device: Annotated[str, typer.Option(metavar="auto|cpu|cuda|mps", help="Where the model runs: auto (a CUDA GPU, then MPS, then the CPU), cpu, cuda or mps; on CUDA under bf16/fp16 autocast.")] = "auto",
    progress: Annotated[bool, typer.Option("--progress", metavar="", help="Show the progress bar even when stderr is not a terminal.")] = False,
) -> None:
    """Train a model on STORE and write a run folder (config.json, metrics.csv, history.png, model.pt, log.txt).

    Defaults are the original's: cnn2, Adam 1e-4, batch 64, 40 epochs, cross-entropy.

    Examples:

      genrekit train stores/gtzan --model cnn2 --split filtered --name cnn2-filtered

      genrekit train stores/gtzan --split random --test-fraction 0.2 --class-weighting balanced --patience 8 --augment noise,pitch,specaugment

      genrekit train stores/gtzan --split leaky-segments --keep last   # the original's inflated protocol

      genrekit train --resume runs/cnn2-filtered
    """
    from ..training import fit, runs
    from ..training.config import EPOCHS, TrainConfig
    from ..exceptions import ParameterError
    from ..datasets.splits import LEAKY_LABEL, SplitConfig

    def show(m: runs.EpochMetrics) -> None:
        console.print(
            f"epoch {m.epoch:>3}: train loss {m.train_loss:.4f} acc {m.train_accuracy:.3f} | val loss {m.val_loss:.4f} "
            f"acc {m.val_accuracy:.3f} track {m.val_track_accuracy:.3f} | lr {m.lr:.2g} | {m.seconds:.1f} s"
        )

    with handle_errors(train):
        if resume is not None:
            # By the source's name: typer vendors its own click, whose ParameterSource is not click's.
            given = {name for name in ctx.params if getattr(ctx.get_parameter_source(name), "name", "DEFAULT") not in ("DEFAULT", "DEFAULT_MAP")}
            _check_resume_options(resume, given, ctx.params)
            with _epoch_progress(_saved_epochs(resume) if epochs is None else epochs, progress) as update:
                result = fit.resume(resume, store=store, epochs=epochs, on_batch=update, on_epoch=show, low_memory=low_memory, device=device)
        else:
            if store is None:
                raise ParameterError("Give a STORE to train on, or --resume RUN to continue a run.")
            config = TrainConfig(
                model=model,
                split=SplitConfig(strategy=split, seed=split_seed, val_fraction=val_fraction, test_fraction=test_fraction,  # type: ignore[arg-type]  # str options; the configs check them
                                  n_folds=n_folds, fold=fold),
                epochs=EPOCHS if epochs is None else epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay, label_smoothing=label_smoothing,
                class_weighting=class_weighting, lr_schedule=lr_schedule, patience=patience, keep=keep,  # type: ignore[arg-type]  # str options; the configs check them
                seed=seed, num_threads=threads, precision=precision, augment=_augment_config(augment, augment_prob, mixup),  # type: ignore[arg-type]  # str options; the configs check them
            )
            from ..models import available_models
            from ..models.musicnn_linear import FITTED_BY_SCRIPT

            trainable = [m for m in available_models() if m not in FITTED_BY_SCRIPT]
            if model not in trainable:
                from ..exceptions import ModelNotFoundError

                raise ModelNotFoundError(f"The '--model' option must be one of {words(trainable)}. Got {model!r} instead.")
            from ..datasets.store import open_store

            open_store(store)  # a missing or unfinished store fails here, before a run folder is created
            run_dir = runs.new_run_dir(runs_dir, name)
            if config.split.leaky:
                err_console.print(f"[bold yellow]{LEAKY_LABEL}[/]")
            console.print(f"run folder: {run_dir}")
            with _epoch_progress(config.epochs, progress) as update:
                result = fit.train(store, config, run_dir=run_dir, on_batch=update, on_epoch=show, low_memory=low_memory, device=device)
    v = result.validation
    leaky = _is_leaky(result.run_dir)
    console.print(
        f"[bold green]done[/] {result.run_dir}: {len(result.history)} epochs{' (early stop)' if result.stopped_early else ''}, "
        f"model.pt = epoch {result.best_epoch}; validation track accuracy {v.get('track_accuracy', float('nan')):.3f} "
        f"(95% CI {v.get('track_accuracy_ci95', [float('nan')] * 2)[0]:.3f}–{v.get('track_accuracy_ci95', [float('nan')] * 2)[1]:.3f}), "
        f"macro-F1 {v.get('macro_f1', float('nan')):.3f}, segment accuracy {v.get('segment_accuracy', float('nan')):.3f}, "
        f"{result.seconds:.0f} s"
    )
    if leaky:
        console.print(f"[bold yellow]{LEAKY_LABEL}[/]")


# The options that are TrainConfig fields, and how to read each from a run's config.
_CONFIG_OPTIONS: dict[str, Callable[[TrainConfig], object]] = {
    "model": lambda c: c.model, "split": lambda c: c.split.strategy, "split_seed": lambda c: c.split.seed,
    "val_fraction": lambda c: c.split.val_fraction, "test_fraction": lambda c: c.split.test_fraction,
    "n_folds": lambda c: c.split.n_folds, "fold": lambda c: c.split.fold, "batch_size": lambda c: c.batch_size, "lr": lambda c: c.lr,
    "weight_decay": lambda c: c.weight_decay, "label_smoothing": lambda c: c.label_smoothing, "class_weighting": lambda c: c.class_weighting,
    "lr_schedule": lambda c: c.lr_schedule, "patience": lambda c: c.patience, "keep": lambda c: c.keep, "seed": lambda c: c.seed,
    "threads": lambda c: c.num_threads, "precision": lambda c: c.precision,
}
# Options that --resume takes: the rest configure a new run, and a resumed run is the run it was.
_RESUME_OPTIONS = {"store", "epochs", "resume", "low_memory", "progress", "device"}  # device: where, not what, it trains


def _check_resume_options(run: Path, given: set[str], values: dict[str, object]) -> None:
    """Refuse an option given with --resume that differs from the run's config (or that only a new run has):
    dropped in silence, it would leave the user believing the run now trains with it."""
    from ..exceptions import ParameterError
    from ..training.runs import run_config

    config = run_config(run)
    options = _options_of(train)
    for name in sorted(given - _RESUME_OPTIONS):
        if name in _CONFIG_OPTIONS:
            if values[name] != _CONFIG_OPTIONS[name](config):
                raise ParameterError(
                    f"{options[name]} {values[name]} differs from {run}'s {_CONFIG_OPTIONS[name](config)}; a resumed run keeps its config "
                    "(only --epochs may grow): start a new run to change it"
                )
        elif name in ("augment", "augment_prob", "mixup"):
            if _augment_config(str(values["augment"]), float(values["augment_prob"]), float(values["mixup"])) != config.augment:  # type: ignore[arg-type]  # typer gave these types
                raise ParameterError(f"--augment, --augment-prob and --mixup describe another augmentation than {run}'s; a resumed run keeps its config")
        else:
            raise ParameterError(f"{options[name]} configures a new run; --resume {run} continues the run in that folder")


def _saved_epochs(run: Path) -> int:
    """Epochs the run was configured for (0 when its folder cannot tell: resume then reports why)."""
    from ..training.runs import run_config

    try:
        return run_config(run).epochs
    except GenrekitError:
        return 0


def _is_leaky(run: Path) -> bool:
    from ..training.runs import run_config

    try:
        return run_config(run).split.strategy == "leaky-segments"
    except GenrekitError:
        return False


def evaluate(
    run: Annotated[Path, typer.Argument(metavar="RUN", help="A run folder made by `genrekit train`.")],
    split: Annotated[str, typer.Option(metavar="test|val", help="Partition of the run's split to evaluate: test or val.")] = "test",
    store: Annotated[Optional[Path], typer.Option(help="Feature store (default: the one the run was trained on).")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Report folder (default: RUN/eval-<split>).")] = None,
    device: Annotated[str, typer.Option(metavar="auto|cpu|cuda|mps", help="Where the model runs: auto (a CUDA GPU, then MPS, then the CPU), cpu, cuda or mps; on CUDA under bf16/fp16 autocast.")] = "auto",
) -> None:
    """Evaluate RUN's model.pt: segment and track accuracy (soft and majority vote), 95% CI, per-genre P/R/F1, confusion matrix.

    Writes summary.json, detailed_results.csv, confusion_matrix.csv, confusion_matrix_normalized.csv and
    confusion_matrix.png.

    Examples:

      genrekit evaluate runs/cnn2-filtered --split test

      genrekit evaluate runs/cnn2-filtered --split val --store stores/gtzan
    """
    from ..evaluation.reports import evaluate_run
    from ..datasets.splits import LEAKY_LABEL

    with handle_errors(evaluate):
        with progress_bar("evaluate") as update:
            report = evaluate_run(run, partition=split, store=store, out_dir=out, on_progress=update, device=device)
    ev, s = report.evaluation, report.summary
    leaky = s["split"]["leaky"]
    if leaky:
        console.print(f"[bold yellow]{LEAKY_LABEL}[/]")
    lo, hi = ev.track_accuracy_ci95
    console.print(
        f"[bold]{run}[/] {s['model']} · split {s['split']['protocol']} / {split}: {ev.n_tracks} tracks, {ev.n_segments} segments"
    )
    console.print(
        f"track accuracy (soft vote) {ev.track_accuracy:.3f} (95% CI {lo:.3f}–{hi:.3f}) · majority vote {ev.track_accuracy_majority:.3f} · "
        f"macro-F1 {ev.macro_f1:.3f} · segment accuracy {ev.segment_accuracy:.3f}" + (" · LEAKY" if leaky else "")
    )
    table = Table(title="per genre (tracks)")
    for col in ("genre", "precision", "recall", "F1", "tracks"):
        table.add_column(col, justify="left" if col == "genre" else "right")
    for genre, m in ev.per_genre.items():
        table.add_row(genre, *(_score(m[k]) for k in ("precision", "recall", "f1")), str(m["support"]))
    console.print(table)
    console.print(f"reports in {report.out_dir}")


def _score(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


_COMPARE_FORMATS = ("table", "csv", "json")


def _compare_records(rows: list[CompareRow]) -> list[dict[str, object]]:
    """Rows as flat records with full precision: what ``--format csv|json`` writes."""
    return [
        {
            "run": r.run, "model": r.model, "protocol": r.protocol, "evaluated_on": r.partition, "n_tracks": r.n_tracks,
            "track_accuracy": r.track_accuracy, "ci95_low": r.ci95[0], "ci95_high": r.ci95[1], "macro_f1": r.macro_f1,
            "segment_accuracy": r.segment_accuracy, "epochs": r.epochs, "train_seconds": r.train_seconds, "leaky": r.leaky,
        }
        for r in rows
    ]


def _pct(value: float, decimals: int = 1) -> str:
    """A fraction as a percentage without the sign (the column header has it); NaN (not recorded) as ?."""
    return "?" if value != value else f"{100 * value:.{decimals}f}"


def compare(
    runs: Annotated[list[Path], typer.Argument(metavar="RUN", help="Run folders to show side by side.")],
    fmt: Annotated[str, typer.Option("--format", "-f", metavar="table|csv|json", help="table (fits 80 columns), csv or json (every figure, full precision).")] = "table",
) -> None:
    """Show runs side by side: model, split protocol, track accuracy with 95% CI, macro-F1, epochs, time.

    Uses each run's evaluation reports (`genrekit evaluate`), else its validation numbers from training.

    Examples:

      genrekit compare runs/cnn2-leaky runs/cnn2-filtered

      genrekit compare runs/* --format csv > runs.csv
    """
    import csv
    import io
    import json
    import sys

    from ..evaluation.reports import compare as compare_runs
    from ..exceptions import ParameterError
    from ..datasets.splits import LEAKY_LABEL

    with handle_errors(compare):
        if fmt not in _COMPARE_FORMATS:
            raise ParameterError.invalid("fmt", "one of table, csv or json", fmt)
        rows = compare_runs(runs)
    if fmt == "json":
        sys.stdout.write(json.dumps(_compare_records(rows), indent=2) + "\n")
        return
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(_compare_records(rows)[0]) if rows else ["run"])
        writer.writeheader()
        writer.writerows(_compare_records(rows))
        sys.stdout.write(buf.getvalue())
        return
    # Within 80 columns: percentages, two-line cells (run over model, protocol over partition) and headers of
    # whole words that never wrap; a long run name folds rather than a number being cut.
    table = Table(title="runs", box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("run\nmodel", overflow="fold")
    table.add_column("split\nevaluated on", min_width=len("leaky-segments"))
    for col in ("tracks", "track acc %\n(95% CI)", "F1 %", "epochs", "train\nmin"):
        table.add_column(col, justify="right", no_wrap=True)
    for r in rows:
        table.add_row(
            escape(f"{r.run}\n{r.model}"), escape(f"{r.protocol}\n{r.partition}") + (" [bold yellow]LEAKY[/]" if r.leaky else ""),
            str(r.n_tracks), f"{_pct(r.track_accuracy)} ({_pct(r.ci95[0], 0)}–{_pct(r.ci95[1], 0)})", _pct(r.macro_f1),
            str(r.epochs if r.epochs is not None else "?"), f"{r.train_seconds / 60:.0f}" if r.train_seconds is not None else "?",
        )
    console.print(table)
    if any(r.leaky for r in rows):
        console.print(f"[bold yellow]LEAKY[/] = {LEAKY_LABEL}")


def register(app: typer.Typer) -> None:
    add_commands(app, train, evaluate, compare)
