"""The whole workflow from Python: ``genrekit.prepare`` -> ``genrekit.train`` -> ``genrekit.evaluate``.

Thin wrappers over :func:`genrekit.datasets.prepare.prepare_store`, :func:`genrekit.training.fit.train` and
:func:`genrekit.evaluation.reports.evaluate_run`, so that a notebook does what ``genrekit prepare/train/evaluate``
do without building configs by hand or reading run folders back. ``train`` and ``evaluate`` need PyTorch
(``genrekit[train]``), imported only when they are called: ``import genrekit`` stays light.

>>> import genrekit                                                           # doctest: +SKIP
>>> genrekit.prepare("genres_original", "stores/gtzan")                      # doctest: +SKIP
>>> model = genrekit.train("stores/gtzan", model="cnn1", epochs=2)           # doctest: +SKIP
>>> report = genrekit.evaluate(model, partition="val")                       # doctest: +SKIP
>>> report.metrics["track_accuracy"], report.figures["confusion_matrix"]     # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import fields, replace
from typing import TYPE_CHECKING, Any

from .config import FeatureConfig
from .exceptions import ParameterError
from ._text import words

if TYPE_CHECKING:
    from .datasets.discover import Track
    from .evaluation.reports import EvaluationReport
    from .classifier import GenreClassifier
    from .engines import Engine
    from .datasets.prepare import PrepareReport
    from .training.config import TrainConfig
    from .training.runs import EpochMetrics

__all__ = ["prepare", "train", "evaluate"]

_PathLike = str | os.PathLike[str]


def prepare(
    data: _PathLike | list[Track],
    out: _PathLike,
    *,
    features: str | FeatureConfig = "logmel",
    jobs: int | None = None,
    max_duration: float | None = None,
    on_progress: Callable[[int, int, str], None] | None = None,
    engine: str | Engine = "local",
) -> PrepareReport:
    """Decode, segment and featurize every track of ``data`` into the feature store ``out``.

    Parameters
    ----------
    data : path or list of Track
        A folder of ``<label>/<audio files>`` (GTZAN's layouts included), a CSV manifest, or tracks
        from :func:`genrekit.datasets.discover.discover`.
    out : path
        Store folder: new, empty, or a store made before (then only new or changed files are computed).
    features : str or FeatureConfig, default="logmel"
        A feature kind (``"logmel"``, ``"musicnn"``) with its defaults, or a full :class:`FeatureConfig`.
    jobs, max_duration, on_progress, engine
        As in :func:`genrekit.datasets.prepare.prepare_store`.

    Returns
    -------
    PrepareReport
        Counts, the files skipped (``errors``: path and reason) and the time taken.

    See Also
    --------
    genrekit.datasets.prepare.prepare_store : what this calls; its Raises section applies.
    """
    from .features import default_config
    from .datasets.prepare import prepare_store

    config = features if isinstance(features, FeatureConfig) else default_config(features)
    return prepare_store(data if isinstance(data, list) else os.fspath(data), os.fspath(out), config,
                         jobs=jobs, max_duration=max_duration, on_progress=on_progress, engine=engine)


def train(
    store: _PathLike,
    config: TrainConfig | None = None,
    *,
    run_dir: _PathLike | None = None,
    device: str = "auto",
    low_memory: bool = False,
    on_epoch: Callable[[EpochMetrics], None] | None = None,
    on_batch: Callable[[int, int, int], None] | None = None,
    **options: Any,
) -> GenreClassifier:
    """Train a model on a feature store and return it, fitted, ready to ``predict``.

    Parameters
    ----------
    store : path
        A store made by :func:`prepare`.
    config : TrainConfig, optional
        The whole recipe; defaults to the original's (cnn2, 40 epochs, random 80/20 track split).
    run_dir : path, optional
        The run folder (new or empty); defaults to ``runs/<UTC timestamp>``.
    device, low_memory, on_epoch, on_batch
        As in :func:`genrekit.training.fit.train`.
    **options
        :class:`~genrekit.training.config.TrainConfig` fields that override ``config``'s, e.g. ``model="cnn1"``,
        ``epochs=2``, ``split=SplitConfig(strategy="random", test_fraction=0.2)``.

    Returns
    -------
    GenreClassifier
        The run's ``model.pt``, as :func:`genrekit.load_model` gives it; its ``train_result`` holds the
        run folder (``train_result.run_dir``), the per-epoch history and the validation metrics.

    Raises
    ------
    ParameterError
        An option that is not a TrainConfig field, or a value it refuses.

    See Also
    --------
    genrekit.training.fit.train : what this calls; its Raises section applies.
    """
    from .classifier import load_model
    from .training.config import TrainConfig
    from .training.fit import train as fit

    known = [f.name for f in fields(TrainConfig)]
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ParameterError(f"genrekit.train() takes TrainConfig fields as options: {words(known)}. Got {words(unknown)} instead.")
    result = fit(os.fspath(store), replace(config or TrainConfig(), **options),
                            run_dir=None if run_dir is None else os.fspath(run_dir),
                            on_batch=on_batch, on_epoch=on_epoch, low_memory=low_memory, device=device)
    model = load_model(result.run_dir, device=device)
    model.train_result = result
    return model


def evaluate(
    run: _PathLike | GenreClassifier,
    *,
    partition: str = "test",
    store: _PathLike | None = None,
    out_dir: _PathLike | None = None,
    device: str = "auto",
    on_progress: Callable[[int, int, str], None] | None = None,
) -> EvaluationReport:
    """Evaluate a trained run on the tracks its split held out, and write the report files.

    Parameters
    ----------
    run : path or GenreClassifier
        A run folder, or a model returned by :func:`train` (its run folder is evaluated).
    partition : {"test", "val"}, default="test"
    store, out_dir, device, on_progress
        As in :func:`genrekit.evaluation.reports.evaluate_run`; the report goes to ``<run>/eval-<partition>`` by default.

    Returns
    -------
    EvaluationReport
        ``metrics`` (track and segment accuracy, 95 % interval, macro-F1), ``evaluation.per_genre``,
        ``figures`` (paths of the PNGs), ``summary`` (what ``summary.json`` holds) and ``out_dir``.

    Raises
    ------
    ParameterError
        ``run`` is a model that did not come from :func:`train` (pass its run folder instead).

    See Also
    --------
    genrekit.evaluation.reports.evaluate_run : what this calls; its Raises section applies.
    """
    from .evaluation.reports import evaluate_run
    from .classifier import GenreClassifier

    if isinstance(run, GenreClassifier):
        if run.train_result is None:
            raise ParameterError(f"The 'run' parameter must be a run folder or a model returned by genrekit.train(). Got the model {run.name!r}; pass its run folder.")
        run = run.train_result.run_dir
    return evaluate_run(os.fspath(run), partition=partition, store=None if store is None else os.fspath(store),
                        out_dir=None if out_dir is None else os.fspath(out_dir), on_progress=on_progress, device=device)
