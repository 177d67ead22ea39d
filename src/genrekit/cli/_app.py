"""The typer application and what every command shares: the console and error handling."""

from __future__ import annotations

import gc
import signal
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from ..exceptions import GenrekitError

__all__ = ["Terminated", "app", "main", "console", "err_console", "handle_errors", "new_progress", "progress_bar"]

app = typer.Typer(
    name="genrekit",
    help="Music genre classification: prepare features, train and evaluate leak-free, classify your music.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])


@contextmanager
def handle_errors() -> Iterator[None]:
    """Turn genrekit errors into a one-line message and exit code 2."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=FutureWarning)
            yield
    except GenrekitError as e:
        err_console.print(f"[bold red]error:[/] {escape(str(e))}", soft_wrap=True)  # paths stay whole, [brackets] literal
        raise typer.Exit(2) from None
    except KeyboardInterrupt as e:
        terminated = isinstance(e, Terminated)
        err_console.print(f"[yellow]{'terminated' if terminated else 'interrupted'}[/]")
        raise typer.Exit(128 + (signal.SIGTERM if terminated else signal.SIGINT)) from None


def new_progress(*, force: bool = False) -> Progress:
    """The progress display every command uses: bar, count, elapsed time and ETA, on stderr, shown on a
    terminal only (logs and pipes stay clean) unless ``force``."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=err_console,
        disable=not (err_console.is_terminal or force),
    )


@contextmanager
def progress_bar(description: str, total: int | None = None) -> Iterator[Callable[[int, int, str], None]]:
    """A rich progress bar with ETA on a terminal (none in logs and pipes); yields a ``(done, total, item)`` callback."""
    with new_progress() as progress:
        task = progress.add_task(description, total=total)

        def update(done: int, total: int, item: str) -> None:
            progress.update(task, completed=done, total=total)

        yield update


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C's KeyboardInterrupt so that a ``kill`` (or a service manager's stop)
    stops workers and leaves stores and runs as cleanly as Ctrl-C does."""


def _on_sigterm(signum: int, frame: object) -> None:
    raise Terminated()


def main() -> None:
    """Run the command line, then freeze what is alive out of the garbage collector (``gc.freeze``).

    SIGTERM is handled like SIGINT (see :class:`Terminated`).

    The collections Python runs while shutting down would otherwise walk torch's ~170,000 objects:
    ~0.4 CPU s, a quarter of a ``genrekit predict one.wav`` cold start (benchmarks/bench_coldstart.py).
    Module teardown, atexit handlers and file flushing run as before.
    """
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        app()
    finally:
        gc.freeze()
