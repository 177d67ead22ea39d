"""``genrekit prepare`` and ``genrekit info``: from audio files to a feature store, and what it holds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.table import Table

from ..config import FeatureConfig
from ..features import default_config, feature_kind
from ..exceptions import ParameterError
from .._text import words
from ._app import add_commands, console, err_console, handle_errors, progress_bar

__all__ = ["register", "prepare", "info"]


def prepare(
    data: Annotated[Path, typer.Argument(metavar="DATA", help="Dataset folder (<label>/<audio files>, GTZAN genres_original/ or genres/, or their parent) or a CSV manifest path,label[,track_id,group].")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Store folder to create or update.")],
    features: Annotated[str, typer.Option(metavar="logmel|musicnn", help="Feature kind: logmel (the original) or musicnn (pretrained embeddings).")] = "logmel",
    config: Annotated[Optional[Path], typer.Option(help="JSON file with FeatureConfig fields (e.g. a store's store.json feature_config).")] = None,
    scaling: Annotated[Optional[str], typer.Option(metavar="seed|standard", help="logmel scaling: seed (per-segment max, the original) or standard (fixed reference).")] = None,
    segment_seconds: Annotated[Optional[float], typer.Option(help="Segment length in seconds (default 3).")] = None,
    hop_seconds: Annotated[Optional[float], typer.Option(help="Hop between segment starts in seconds (default = segment length).")] = None,
    jobs: Annotated[Optional[int], typer.Option("--jobs", "-j", help="Worker processes (default: all cores).")] = None,
    max_duration: Annotated[Optional[float], typer.Option(min=0.001, help="Skip files longer than this many seconds (default: no limit).")] = None,
    strict: Annotated[bool, typer.Option(metavar="", help="Exit 1 when any file could not be used.")] = False,
    engine: Annotated[str, typer.Option(metavar="local|ray", help="local (processes on this machine) or ray (a Ray cluster; needs the ray extra). The store is the same.")] = "local",
    address: Annotated[Optional[str], typer.Option(metavar="auto|HOST:PORT", help="With --engine ray: 'auto' or HOST:PORT of a running cluster (default: start one here with --jobs CPUs).")] = None,
) -> None:
    """Decode, segment and featurize every track of DATA into the store OUT.

    Re-running with unchanged inputs does no work; new or changed files are processed alone.
    Unreadable files are reported by name and skipped.

    Examples:

      genrekit prepare ~/data/gtzan/genres_original --out stores/gtzan

      genrekit prepare my_music/ --out stores/mine --features musicnn --jobs 2

      genrekit prepare /shared/gtzan --out /shared/stores/gtzan --engine ray --address auto
    """
    from ..datasets.prepare import prepare_store
    from ..engines import available_engines, get_engine

    if engine not in available_engines():
        err_console.print(f"[bold red]error:[/] The '--engine' option must be one of {words(available_engines())}. Got {engine!r} instead.")
        raise typer.Exit(2)
    if address is not None and engine != "ray":
        err_console.print("[bold red]error:[/] --address is where a Ray cluster runs: use it with --engine ray")
        raise typer.Exit(2)
    with handle_errors(prepare):
        feature_config = _feature_config(features, config, scaling, segment_seconds, hop_seconds)
        runner = get_engine(engine, jobs=jobs, address=address)
        with progress_bar("prepare") as update:
            report = prepare_store(data, out, feature_config, max_duration=max_duration, on_progress=update, engine=runner)
    for path, note in sorted(set(report.warnings)):
        err_console.print(f"[yellow]warning:[/] {escape(path)}: {escape(note)}", soft_wrap=True)
    for path, reason in report.errors:
        err_console.print(f"[red]skipped[/] {escape(path)}: {escape(reason)}", soft_wrap=True)
    state = "up to date" if report.up_to_date else f"{report.n_computed} computed, {report.n_cached} from cache"
    console.print(
        f"[bold green]store[/] {escape(str(out))}: {report.n_tracks - len(report.errors)} tracks, {report.n_segments} segments "
        f"({state}), {len(report.errors)} skipped, {report.seconds:.1f} s",
        soft_wrap=True,
    )
    if strict and report.errors:
        raise typer.Exit(1)


def _feature_config(
    kind: str, config: Path | None, scaling: str | None, segment_seconds: float | None, hop_seconds: float | None
) -> FeatureConfig:
    from dataclasses import replace

    if config is not None:
        try:
            values = json.loads(config.read_text())
        except (OSError, ValueError) as e:
            raise ParameterError(f"--config {config}: not a readable JSON file ({e})") from e
        if not isinstance(values, dict):
            raise ParameterError(f"--config {config}: expected a JSON object of FeatureConfig fields")
        try:
            base = FeatureConfig.from_dict(values.get("feature_config", values))
            feature_kind(base.kind)  # an unknown kind is the file's too
        except ParameterError as e:  # about the file's keys, not the options typed
            raise ParameterError(f"--config {config}: {e}") from e
    else:
        base = default_config(kind)
    if scaling is not None:
        base = replace(base, scaling=scaling)  # type: ignore[arg-type]  # a str option; FeatureConfig checks it (one-line error)
    if segment_seconds is not None or hop_seconds is not None:
        seg = segment_seconds if segment_seconds is not None else base.audio.segment_seconds
        hop = hop_seconds if hop_seconds is not None else seg
        base = replace(base, audio=replace(base.audio, segment_seconds=seg, hop_seconds=hop))
    return base


def info(store: Annotated[Path, typer.Argument(metavar="STORE", help="A store folder made by `genrekit prepare`.")],
         split: Annotated[str, typer.Option(metavar="filtered|random|kfold|leaky-segments", help="Also count tracks per partition for this split strategy: filtered, random, kfold or leaky-segments.")] = "random",
         seed: Annotated[int, typer.Option(help="Split seed.")] = 0) -> None:
    """Show what a store holds: tracks and segments per label and partition, errors and config.

    With --split, the partitions are those a run with that split would train, validate and test on, so a
    split can be checked before any training.

    Example:

      genrekit info stores/gtzan --split filtered
    """
    from ..datasets.splits import SplitConfig, make_split
    from ..datasets.store import open_store

    with handle_errors(info):
        st = open_store(store)
        split_obj = make_split(st.tracks, SplitConfig(strategy=split, seed=seed))  # type: ignore[arg-type]  # a str option; SplitConfig checks it
    per_partition = st.partition_counts(split_obj)
    unit = " seg" if split_obj.leaky else ""
    console.print(escape(f"{store} ({st.meta['n_tracks']} tracks, {st.meta['n_segments']} segments, split {split})"))  # wraps at the terminal, not the table
    table = Table()
    for col in ("label", "tracks", "segments", "train", "val", "test"):
        table.add_column(col, justify="left" if col == "label" else "right")
    for label, counts in st.summary().items():
        per = [f"{per_partition[label][p]}{unit}" for p in ("train", "val", "test")]
        table.add_row(escape(label), str(counts["tracks"]), str(counts["segments"]), *per)
    console.print(table)
    for note in split_obj.notes:
        console.print(f"[cyan]note:[/] {escape(note)}", soft_wrap=True)
    cfg = st.config
    console.print(f"features: {cfg.kind}, shape {tuple(st.meta['feature_shape'])}, scaling {cfg.scaling}, "
                  f"{cfg.audio.sample_rate} Hz, segments {cfg.audio.segment_seconds:g} s / hop {cfg.audio.hop_seconds:g} s")
    if st.errors:
        console.print(f"[red]{len(st.errors)} files skipped:[/]")
        for path, reason in st.errors:
            console.print(f"  {escape(path)}: {escape(reason)}", soft_wrap=True)


def register(app: typer.Typer) -> None:
    add_commands(app, prepare, info)
