"""``genrekit report``, ``playlists`` and ``tag``: turn a library run's results file into an organized library."""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape

from ._app import add_commands, console, err_console, handle_errors, option_words, progress_bar

__all__ = ["register"]

RESULTS_HELP = "A results file of genrekit predict (.parquet, .csv or .jsonl)."
_STYLE = {"write": "green", "same": "dim", "keep": "yellow", "skip": "dim", "error": "red"}
_SKIPPED = {"below_min_confidence": "below --min-confidence"}  # TagAction.skipped_because, as tag's summary says it


@contextmanager
def _os_errors() -> Iterator[None]:
    """A file that cannot be written (permissions, a full disk) as one line and exit code 2, like genrekit's own errors."""
    try:
        yield
    except OSError as e:
        where = f"{e.filename}: " if e.filename else ""
        err_console.print(f"[bold red]error:[/] {escape(where + (e.strerror or str(e)))}")
        raise typer.Exit(2) from None


def report(
    results: Annotated[Path, typer.Argument(help=RESULTS_HELP)],
    out: Annotated[Path, typer.Option("--out", "-o", help="The HTML file to write.")] = Path("report.html"),
    title: Annotated[Optional[str], typer.Option("--title", help="The page's heading (default: the results file's name).")] = None,
) -> None:
    """Write one HTML page about a library run: genres, confidence, genres by folder, files to check, and a table of all files.

    The page is self-contained (no network; open it from disk or mail it).

    Examples:

      genrekit predict ~/Music --out results.parquet

      genrekit report results.parquet --out report.html
    """
    with handle_errors(report), _os_errors():
        from ..organize import report as write_report

        with progress_bar("report", total=3) as update:
            summary = write_report(results, out, title=title, on_progress=update)
    console.print(
        f"wrote {escape(str(summary.out))} ({summary.n_bytes / 1e6:.1f} MB, {summary.seconds:.1f} s): {summary.n_files:,} files, "
        f"{summary.n_confident:,} confident, {summary.n_uncertain:,} uncertain, {summary.n_failed:,} failed"
    )


def playlists(
    results: Annotated[Path, typer.Argument(help=RESULTS_HELP)],
    out: Annotated[Path, typer.Option("--out", "-o", help="The folder for the playlists.")] = Path("playlists"),
    include_uncertain: Annotated[bool, typer.Option("--include-uncertain", help="Put uncertain files in their genre's playlist, not in uncertain.m3u8.")] = False,
    absolute: Annotated[bool, typer.Option("--absolute", help="Write absolute paths (default: relative to --out where possible).")] = False,
) -> None:
    """Write one playlist per genre (extended M3U, UTF-8 .m3u8) from a library run; uncertain files go to uncertain.m3u8.

    Running it again replaces the playlists atomically, in the same order for the same results.

    Examples:

      genrekit playlists results.parquet --out ~/Music/playlists
    """
    with handle_errors(playlists), _os_errors():
        from ..organize import write_playlists

        with progress_bar("playlists") as update:
            summary = write_playlists(results, out, include_uncertain=include_uncertain, absolute=absolute, on_progress=update)
    for path, n in summary.playlists.items():
        console.print(f"{escape(str(path))}: {n:,} files")
    for path in summary.removed:
        console.print(f"removed {escape(str(path))} (no file of that kind in these results)")
    if summary.n_failed:
        console.print(f"{summary.n_failed:,} files that failed in the library run are in no playlist")


def tag(
    results: Annotated[Optional[Path], typer.Argument(help=RESULTS_HELP)] = None,
    write: Annotated[bool, typer.Option("--write", help="Change the files (default: a dry run that only shows what would change).")] = False,
    min_confidence: Annotated[Optional[float], typer.Option("--min-confidence", help="Leave files whose genre's probability is lower (0-1).")] = None,
    include_uncertain: Annotated[bool, typer.Option("--include-uncertain", help="Also tag files the model was uncertain about.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace a genre already in a file (default: keep it).")] = False,
    undo_log: Annotated[Optional[Path], typer.Option("--undo-log", help="The undo log to create with --write (default: beside RESULTS).")] = None,
    undo: Annotated[Optional[Path], typer.Option("--undo", help="Restore the genres an earlier --write changed, from its undo log.")] = None,
) -> None:
    """Write each file's genre into its genre tag (MP3, Ogg Vorbis, Opus, FLAC, MP4/M4A); a dry run unless --write.

    Only the genre field changes; a file changed since the library run is skipped; every write is atomic and
    logged, and --undo LOG restores the genres as they were. Confident results only, unless
    --include-uncertain; a genre already in a file is kept unless --overwrite.

    Examples:

      genrekit tag results.parquet

      genrekit tag results.parquet --write

      genrekit tag --undo results.parquet.tag-undo-20260101T120000Z.jsonl
    """
    with handle_errors(tag), _os_errors():
        from ..organize import tag_files, undo_tags

        if undo is not None:
            if results is not None or write:
                err_console.print("[bold red]error:[/] --undo LOG restores from the log alone: give no RESULTS and no --write")
                raise typer.Exit(2)
            with progress_bar("undo") as update:
                outcome = undo_tags(undo, on_progress=update)
        else:
            if results is None:
                err_console.print("[bold red]error:[/] give a RESULTS file (or --undo LOG)")
                raise typer.Exit(2)
            with progress_bar("tag" if write else "dry run") as update:
                outcome = tag_files(
                    results, write=write, min_confidence=min_confidence, include_uncertain=include_uncertain, overwrite=overwrite, undo_log=undo_log, on_progress=update
                )
    said = option_words(tag)
    skipped: Counter[str] = Counter()
    for action in outcome.actions:
        if action.skipped_because is not None:
            skipped[_SKIPPED.get(action.skipped_because, action.skipped_because)] += 1
            continue
        reason = action.render(said)
        if console.is_terminal:
            console.print(f"[{_STYLE[action.action]}]{action.action:5}[/] {escape(action.path)}: {escape(reason)}", highlight=False, soft_wrap=True)
        else:  # plain lines in pipes and logs: rich's rendering costs ~0.3 ms a line, half a minute for 100,000 files
            sys.stdout.write(f"{action.action:5} {action.path}: {reason}\n")
    counts = outcome.counts
    verb = "restored" if undo is not None else "set" if write else "would set"
    line = f"{verb} {counts.get('write', 0):,}, already right {counts.get('same', 0):,}, kept {counts.get('keep', 0):,}, errors {counts.get('error', 0):,}"
    if skipped:
        line += ", skipped " + ", ".join(f"{n:,} {why}" for why, n in sorted(skipped.items()))
    console.print(line, soft_wrap=True)
    if outcome.dry_run:
        console.print("dry run: nothing was changed; add --write to tag the files")
    elif undo is None and outcome.undo_log is not None:
        console.print(f"undo log: {escape(str(outcome.undo_log))} (genrekit tag --undo {escape(str(outcome.undo_log))})")
    if outcome.n_errors:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    add_commands(app, report, playlists, tag)
