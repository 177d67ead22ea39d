"""``genrekit predict``, ``models``, ``spectrogram`` and ``demo``: classify music and look at it.

Output schemas (stable; documented in the README):

- ``--format json``: ``{"model": {...describe()}, "results": [Prediction.to_dict() | PredictionError.to_dict()]}``,
  a failed file being ``{"path", "error", "error_kind"}``.
- ``--format csv``: the rows of a results file (below, ``content_hash`` empty); with ``--segments`` one row per
  segment: ``path,segment_index,start_s,end_s,genre,confidence,p_<genre>...,tags``.
- Library runs (``--out`` ending in ``.parquet``, ``.jsonl`` or ``.csv``, whatever ``--format`` says: it only
  chooses what is printed): written as they go and resumable,
  ``path,content_hash,genre,confidence,uncertain,p_<genre>...,tags,duration_s,warnings,error,error_kind``
  (see :mod:`genrekit.library.formats`). ``error`` is the reason alone: the path is its own column.

``tags`` are musicnn's strongest tags (:mod:`genrekit.tags`; ``tag:score;...`` in CSV and results files):
``--tags K`` lists K, by default none in the table and 5 elsewhere (results files always hold 5).
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing, contextmanager
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer
from rich.markup import escape
from rich.table import Table

from .._io import output_errors, printable, readable
from .._text import percent
from ..speedups import frozen_collector
from .._text import words
from ..library.formats import RESULT_FORMATS, notes
from ..library.writers import get_writer
from ._app import add_commands, console, err_console, handle_errors, print_table, progress_bar

from ..results import Prediction, PredictionError
from ..tags import DEFAULT_TAGS, Tag, uncertain_hint

if TYPE_CHECKING:
    from ..classifier import GenreClassifier

__all__ = ["register"]

FORMATS = ("table", "json", "csv")


@contextmanager
def _loaded(model: str, backend: str = "auto", device: str = "auto") -> Iterator[GenreClassifier]:
    """``load_model(model)`` set up for one command; threads and collector restored after (for in-process callers).

    - the model is loaded with the garbage collector off, and what is then alive is frozen out of it
      while the command runs (:func:`genrekit.speedups.frozen_collector`). PyTorch is imported only for
      a model it runs (``--backend torch``, a cnn1/cnn2 checkpoint).
    - The model runs on one thread, in this process for one file and in each of the ``--jobs`` worker
      processes for several, which use the cores; one clip is too little work to split: on a busy 2-core machine each op's second
      thread waits for a core, and a fresh ``genrekit predict one.wav`` took ~0.45 s longer with 2 threads.

    See benchmarks/bench_coldstart.py.
    """
    with frozen_collector() as loaded:
        from ..engines.local import one_torch_thread
        from ..classifier import load_model

        classifier = load_model(model, backend=backend, device=device)
        threads = one_torch_thread()
        try:
            loaded()
            yield classifier
        finally:
            if threads is not None:
                sys.modules["torch"].set_num_threads(threads)


def _classify(
    model: GenreClassifier, paths: Sequence[Path], jobs: int | None, description: str, max_duration: float | None = None
) -> list[Prediction | PredictionError]:
    from ..datasets.discover import find_audio_files

    files, missing = find_audio_files(paths)
    results: list[Prediction | PredictionError] = list(missing)
    with progress_bar(description, total=len(files)) as update, closing(model.predict_many(files, jobs=jobs, max_duration=max_duration)) as stream:
        for i, r in enumerate(stream, 1):
            results.append(r)
            update(i, len(files), r.path or "")
    return results


def _tag_text(tags: Sequence[Tag] | None, k: int, sep: str = "  ") -> str:
    """The ``k`` strongest tags as the table prints them: ``electronic 0.61 (MSD)``, scores to 2 decimals."""
    return sep.join(f"{t.tag} {t.score:.2f} ({t.source.split('_')[0]})" for t in (tags or ())[:k])


def shown_path(path: str | None) -> str:
    """A result's path as a table shows it: relative to the working folder when under it, else whole, so the
    folder of every file is named (a bare file name would not say which of two albums it came from)."""
    if not path:
        return ""
    try:
        return os.path.relpath(path) if not os.path.relpath(path).startswith("..") else path
    except ValueError:  # another drive (Windows)
        return path


def _table(results: Sequence[Prediction | PredictionError], top_k: int, title: str, tags: int = 0) -> Table:
    table = Table(title=escape(title))
    table.add_column("file", overflow="fold")  # a long path is folded over lines, never cut
    table.add_column("genre", style="bold")
    table.add_column("probability", justify="right")
    table.add_column(f"top {top_k}")
    if tags:
        table.add_column(f"tags (top {tags})")
    table.add_column("segments", justify="right")
    with_notes = any(notes(r) for r in results)
    if with_notes:
        table.add_column("notes", style="yellow")
    for r in results:
        name = escape(shown_path(r.path))
        extra = [escape(notes(r))] if with_notes else []
        if isinstance(r, PredictionError):
            table.add_row(name, "[red]error[/]", "", f"[red]{escape(r.error)}[/]", *([""] if tags else []), "", *extra)
            continue
        top = "  ".join(f"{g} {percent(p)}" for g, p in r.top(top_k))
        tag_cell = [escape(_tag_text(r.tags, tags, "\n"))] if tags else []  # one a line: a narrow column cannot split one
        table.add_row(name, _genre_cell(r), "" if r.genre is None else percent(r.confidence), top, *tag_cell, str(len(r.segments)), *extra)
    return table


def _named(r: Prediction | PredictionError, shown: Callable[[str], str]) -> Prediction | PredictionError:
    """``r`` with its path, and the path in its messages, as ``shown`` gives them."""
    if isinstance(r, PredictionError):
        return dataclasses.replace(r, path=shown(r.path), error=shown(r.error))
    return dataclasses.replace(r, path=None if r.path is None else shown(r.path), warnings=tuple(map(shown, r.warnings)))


def _genre_cell(r: Prediction) -> str:
    """The genre as a reader should take it: none for silence, a guess when the model is unsure."""
    if r.genre is None:
        return "[dim](silent: no genre)[/]"
    return f"{r.genre} [yellow](uncertain)[/]" if r.uncertain else r.genre


def _write_plots(results: Sequence[Prediction | PredictionError], plot_dir: Path) -> dict[str, str]:
    from ..plots.predictions import plot_timeline, safe_stem

    with output_errors(plot_dir):  # a file in the way, or a folder that cannot be written: one line
        plot_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, str] = {}
    used: set[str] = set()
    for r in results:
        if isinstance(r, Prediction) and r.path:
            stem = safe_stem(r.path)
            name = stem
            n = 1
            while name in used:
                n += 1
                name = f"{stem}_{n}"
            used.add(name)
            written[r.path] = str(plot_timeline(r, plot_dir / f"{name}.png"))
    return written


def predict(
    paths: Annotated[list[Path], typer.Argument(metavar="PATH", help="Audio files or folders (searched recursively): wav, au, flac, ogg, mp3.")],
    model: Annotated[str, typer.Option("--model", "-m", metavar="NAME|RUN|FILE", help="'default' or 'zero-shot' (shipped), a run folder, a model.pt, or an .onnx file from genrekit export.")] = "default",
    top_k: Annotated[int, typer.Option("--top-k", "-k", min=1, help="How many genres to list per track.")] = 3,
    fmt: Annotated[Optional[str], typer.Option("--format", "-f", metavar="table|json|csv", help="table (default), json or csv.")] = None,
    segments: Annotated[bool, typer.Option("--segments", metavar="", help="Include the per-segment timeline.")] = False,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="A .parquet, .csv or .jsonl results file, written as files finish and continued when run again (whatever --format says). Any other name: write the --format json or csv output there instead of stdout.")] = None,
    plot: Annotated[Optional[Path], typer.Option("--plot", help="Write one timeline PNG per track into this folder.")] = None,
    jobs: Annotated[Optional[int], typer.Option("--jobs", "-j", help="Worker processes (default: all cores), each decoding files and running the model on one thread. With --engine ray and no --address: the CPUs of the Ray instance started.")] = None,
    max_duration: Annotated[Optional[float], typer.Option(min=0.001, help="Skip files longer than this many seconds (default: no limit).")] = None,
    engine: Annotated[str, typer.Option(metavar="local|ray", help="local (processes on this machine) or ray (a Ray cluster; needs the ray extra and a --out results file).")] = "local",
    address: Annotated[Optional[str], typer.Option(metavar="auto|HOST:PORT", help="With --engine ray: 'auto' or HOST:PORT of a running cluster (default: start one here).")] = None,
    backend: Annotated[str, typer.Option(metavar="auto|torch|onnxruntime", help="What runs the network: auto (onnxruntime where it is faster and installed), torch or onnxruntime.")] = "auto",
    device: Annotated[str, typer.Option(metavar="auto|cpu|cuda|mps", help="Where the network runs: auto (a CUDA GPU, then MPS, then the CPU, as far as the runtime can use them), cpu, cuda or mps.")] = "auto",
    tags: Annotated[Optional[int], typer.Option("--tags", min=0, help=f"List the K strongest of musicnn's 100 tags (rock, electronic, female vocalists, piano...) per track, and per segment with --segments: each score is the tagger's own probability that the tag applies (they do not sum to 1). Default: none in the table, {DEFAULT_TAGS} in JSON and CSV. Models over musicnn embeddings only.", metavar="K")] = None,
) -> None:
    """Classify audio files: genres with probabilities, and optionally the per-segment timeline.

    Every file is analysed over its whole length, 3 s segment by segment, and the segment
    probabilities are averaged. Unreadable files are listed with their reason; the exit code is 1
    when any file failed.

    Examples:

      genrekit predict song.mp3

      genrekit predict song.mp3 --tags 5

      genrekit predict ~/Music --format csv --out genres.csv

      genrekit predict song.flac --segments --format json --plot plots/

      genrekit predict ~/Music --out results.parquet

      genrekit predict /shared/music --engine ray --address auto --out /shared/results.parquet
    """
    from ..engines import available_engines

    if fmt is not None and fmt not in FORMATS:
        err_console.print(f"[bold red]error:[/] The '--format' option must be one of {words(FORMATS)}. Got {fmt!r} instead.")
        raise typer.Exit(2)
    if engine not in available_engines():
        err_console.print(f"[bold red]error:[/] The '--engine' option must be one of {words(available_engines())}. Got {engine!r} instead.")
        raise typer.Exit(2)
    if address is not None and engine != "ray":
        err_console.print("[bold red]error:[/] --address is where a Ray cluster runs: use it with --engine ray")
        raise typer.Exit(2)
    if engine != "local" or (out is not None and out.suffix.lower() in RESULT_FORMATS):
        if tags not in (None, DEFAULT_TAGS):
            err_console.print(f"[bold red]error:[/] a results file holds the {DEFAULT_TAGS} strongest tags of every track (one column for every run): drop --tags, or print with --format json or csv and no results file")
            raise typer.Exit(2)
        _library_run(paths, out, model, jobs, engine, address, segments=segments, plot=plot, max_duration=max_duration, backend=backend, device=device)
        return
    if engine != "local":
        err_console.print(f"[bold red]error:[/] --engine {engine} writes a results file: give --out results.parquet (or .csv, .jsonl)")
        raise typer.Exit(2)
    if out is not None and fmt in (None, "table"):  # a table goes to the terminal: the file would silently not be written
        err_console.print(f"[bold red]error:[/] --out {escape(str(out))}: give --format json or csv, or a results file ending in .parquet, .csv or .jsonl")
        raise typer.Exit(2)
    fmt = fmt or "table"
    with handle_errors(predict), _loaded(model, backend, device) as clf:
        results = _classify(clf, paths, jobs, "predict", max_duration)
    if not results:
        err_console.print("[bold red]error:[/] no audio files found (extensions: wav, au, flac, ogg, mp3)")
        raise typer.Exit(1)
    with handle_errors(predict):
        plots = _write_plots(results, plot) if plot else {}
    n_tags = (0 if fmt == "table" else DEFAULT_TAGS) if tags is None else tags
    if tags and not clf.has_tags:
        err_console.print(f"model {escape(clf.name)} ({clf.describe()['architecture']}) has no tags: only models over musicnn embeddings compute musicnn's tags", soft_wrap=True)
    n_tags = n_tags if clf.has_tags else 0
    if fmt == "table":
        print_table(_table(results, top_k, f"genrekit {clf.name}", n_tags))
        for r in results:
            hint = uncertain_hint(r.tags, clf.classes_) if n_tags and isinstance(r, Prediction) and r.uncertain and r.genre else ""
            if hint:
                console.print(f"[yellow]{escape(shown_path(r.path))}[/]: {escape(hint)}", soft_wrap=True)
        if segments:
            for r in results:
                if isinstance(r, Prediction):
                    name = f"[bold]{escape(shown_path(r.path))}[/]"
                    if n_tags:
                        for s in r.segments:
                            console.print(f"{name} {s.start_s:.0f}s {s.genre or 'silence'}  {escape(_tag_text(s.tags, n_tags))}")
                    else:
                        console.print(f"{name}: " + "  ".join(f"{s.start_s:.0f}s {s.genre or 'silence'}" for s in r.segments))
        text = None
    else:
        # Names as text that any reader takes (not UTF-8 bytes as \xNN); on a terminal, no raw control characters either.
        shown = printable if out is None and sys.stdout.isatty() else readable
        text = get_writer(fmt)([_named(r, shown) for r in results], model=clf.describe(), labels=clf.classes_, top_k=top_k, segments=segments, tags=n_tags)
    if text is not None:
        if out:
            with handle_errors(predict), output_errors(out):
                out.write_text(text, encoding="utf-8")
            err_console.print(f"wrote {escape(str(out))}")
        else:
            sys.stdout.write(text if text.endswith("\n") else text + "\n")
    for r in results:
        if isinstance(r, PredictionError):
            err_console.print(f"[red]failed[/] {escape(str(r))}")
    if plots:
        err_console.print(f"timeline plots in {plot}/")
    if any(isinstance(r, PredictionError) for r in results):
        raise typer.Exit(1)


def _library_run(
    paths: Sequence[Path],
    out: Path | None,
    model: str,
    jobs: int | None,
    engine: str,
    address: str | None,
    *,
    segments: bool,
    plot: Path | None,
    max_duration: float | None,
    backend: str = "auto",
    device: str = "auto",
) -> None:
    """``predict LIBRARY --out results.parquet``: a resumable results file (see :mod:`genrekit.library.run`)."""
    from ..engines import get_engine
    from ..library.run import classify_library

    if out is None or out.suffix.lower() not in RESULT_FORMATS:
        err_console.print(f"[bold red]error:[/] --engine {engine} writes a results file: give --out ending in {', '.join(RESULT_FORMATS)}")
        raise typer.Exit(2)
    if segments or plot:
        err_console.print("[bold red]error:[/] a results file holds one row per track: for --segments or --plot, print with --format json or csv (no results file)")
        raise typer.Exit(2)
    with handle_errors(predict), _loaded(model, backend, device) as clf:
        runner = get_engine(engine, jobs=jobs, address=address)
        with progress_bar("predict") as update:
            report = classify_library(paths, out, clf, engine=runner, max_duration=max_duration, on_progress=update)
    if report.n_files == 0:
        err_console.print("[bold red]error:[/] no audio files found (extensions: wav, au, flac, ogg, mp3)")
        raise typer.Exit(1)
    shown = 20
    for path, reason in report.errors[:shown]:
        err_console.print(f"[red]failed[/] {escape(f'{path}: {reason}')}", soft_wrap=True)
    if report.n_errors > shown:
        err_console.print(f"[red]... and {report.n_errors - shown} more failed files[/] (rows with an error in {escape(str(out))})")
    console.print(
        f"[bold green]results[/] {escape(str(out))}: {report.n_files} files, {report.n_computed} classified now, "
        f"{report.n_skipped} already there, {report.n_copied} copies of known files, {report.n_errors} failed, {report.seconds:.1f} s",
        soft_wrap=True,
    )
    if report.n_errors:
        raise typer.Exit(1)


def models() -> None:
    """List the shipped models with their training data, protocol and measured accuracy.

    Any of them is what --model takes in predict, serve and spectrogram; the default needs no option.

    Example:

      genrekit models
    """
    from ..classifier import available_models, load_model

    with handle_errors(models):
        names = available_models()
        if not names:
            err_console.print("no model is shipped in this installation")
            raise typer.Exit(1)
        console.print(_model_card([load_model(name).describe() for name in names]))
        console.print("\nFigures: reports/model_selection.md (scripts/select_default_model.py). "
                      "Architectures you can train: genrekit train --model cnn1 | cnn2 | musicnn-head.", soft_wrap=False)


def _model_card(infos: list[dict[str, Any]]) -> Table:
    """A card per shipped model: what it is, what it learned from, how it was measured (with intervals),
    and what its confidence means. Two columns, so it reads at 80 columns."""
    card = Table.grid(padding=(0, 2))
    card.add_column(style="bold", no_wrap=True)
    card.add_column(overflow="fold")

    def interval(value: float, ci: list[float]) -> str:
        return f"{value:.1%} [{ci[0]:.1%}, {ci[1]:.1%}]"

    for i, info in enumerate(infos):
        val, cal = info.get("validation", {}), info.get("calibration", {})
        data = info.get("training_data", {})
        if i:
            card.add_row("", "")
        card.add_row(f"[cyan]{escape(info['name'])}[/]", escape(info.get("description", info["architecture"])))
        if isinstance(data, dict):
            counts = ", ".join(f"{data[k]} {k[2:]}" for k in ("n_clips", "n_excerpts", "n_artists") if k in data)
            card.add_row("trained on", escape(data.get("dataset", "")) + (f" ({counts})" if counts else ""))
        if "protocol" in val:
            card.add_row("measured by", escape(val["protocol"]) + (f", {val['n_tracks']} tracks" if "n_tracks" in val else ""))
        if "track_accuracy" in val and "track_accuracy_ci95" in val:
            card.add_row("track accuracy", interval(val["track_accuracy"], val["track_accuracy_ci95"]))
        if "macro_recall" in val and "macro_recall_ci95" in val:
            card.add_row("macro recall", interval(val["macro_recall"], val["macro_recall_ci95"]))
        second = val.get("second_view")
        if isinstance(second, dict) and "track_accuracy" in second:
            card.add_row("second view", f"{second['track_accuracy']:.1%} accuracy, {escape(second.get('protocol', ''))}")
        if "uncertain_below" in cal:
            card.add_row("confidence", f"flagged uncertain below {cal['uncertain_below']:.0%}; calibration error (ECE) "
                                       f"{cal['ece_before'] if cal.get('temperature', 1.0) == 1.0 else cal['ece_after']:.3f}")
        elif info.get("uncertain_below") is None:
            card.add_row("confidence", "no calibrated threshold: its answers are never flagged uncertain")
        if "runtime" in info:
            card.add_row("runs with", escape(info["runtime"]))
    return card


def spectrogram(
    paths: Annotated[list[Path], typer.Argument(metavar="PATH", help="Audio files or folders.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the PNG images.")],
    per_segment: Annotated[bool, typer.Option("--per-segment", metavar="", help="One image per 3 s segment instead of one per track.")] = False,
    model: Annotated[Optional[str], typer.Option("--model", "-m", metavar="NAME|RUN|FILE", help="Render what this model sees: 'default' (musicnn's 16 kHz, 96-band input), a run folder or model.pt (default: the original 22.05 kHz, 128-band log-mel).")] = None,
) -> None:
    """Render mel spectrogram images: what the model sees.

    Each image is the chosen model's own input (the original log-mel for cnn1/cnn2, musicnn's log-mel for
    the models over musicnn), one per file or, with --per-segment, one per segment.

    Examples:

      genrekit spectrogram song.ogg --out spectrograms/

      genrekit spectrogram song.ogg --out spectrograms/ --per-segment --model default
    """
    from ..config import FeatureConfig
    from ..classifier import load_model
    from ..datasets.discover import find_audio_files
    from ..plots.predictions import write_spectrograms

    with handle_errors(spectrogram):
        config = load_model(model).input_config if model else FeatureConfig()
        files, missing = find_audio_files(paths)
        written, failed = write_spectrograms(files, out, config, per_segment=per_segment)
    failed = missing + failed
    console.print(f"wrote {written} spectrogram {'image' if written == 1 else 'images'} to {out}/")
    for f in failed:
        err_console.print(f"[red]failed[/] {escape(str(f))}")
    if failed:
        raise typer.Exit(1)


def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the plots and the HTML summary.")] = Path("demo-output"),
    model: Annotated[str, typer.Option("--model", "-m", metavar="NAME|RUN|FILE", help="Model to demonstrate.")] = "default",
) -> None:
    """Classify the freely licensed sample clips shipped with genrekit, and write plots and an HTML page.

    Nothing is downloaded: the clips, their licenses and the model are inside the package.

    Example:

      genrekit demo --out demo-output
    """
    from ..plots.page import write_html_summary

    with handle_errors(demo), _loaded(model) as clf:
        with resources.as_file(resources.files("genrekit") / "samples") as samples:
            results = _classify(clf, [samples], None, "demo")
            results = [r for r in results]
            with output_errors(out):
                out.mkdir(parents=True, exist_ok=True)
            plots = _write_plots(results, out / "timelines")
            rel = {p: str(Path(v).relative_to(out)) for p, v in plots.items()}
            page = write_html_summary(results, out / "index.html", model_name=clf.name, plots=rel)
    info = clf.describe()
    acc = info.get("validation", {}).get("track_accuracy")
    subtitle = f" (validation track accuracy {acc:.1%})" if isinstance(acc, float) else ""
    print_table(_table(results, 3, f"genrekit demo: model {clf.name}, {info['architecture']}{subtitle}"))
    console.print(f"[bold green]demo output[/]: {page.resolve()} (HTML summary) and {(out / 'timelines').resolve()}/ (timeline plots)")


def register(app: typer.Typer) -> None:
    add_commands(app, predict, models, spectrogram, demo)
