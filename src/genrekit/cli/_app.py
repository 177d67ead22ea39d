"""The typer application and what every command shares: the console and error handling."""

from __future__ import annotations

import gc
import inspect
import os
import signal
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any, NoReturn, TypeVar, get_type_hints

import typer
from rich.console import Console
from rich.markup import escape
from rich.measure import Measurement
from typer.core import TyperArgument, TyperCommand
from typer.models import OptionInfo
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from .._io import printable
from ..exceptions import NOTHING, TRAIN_EXTRA, GenrekitError, Mention, MissingDependencyError, ParameterError

__all__ = [
    "Command", "LIBRARY_OPTIONS", "option_words", "PlainProgress", "SafeConsole", "Terminated", "add_commands", "app", "cli_message", "main", "console", "err_console",
    "handle_errors", "new_progress", "parameter_options", "progress_bar", "usage_word",
]

app = typer.Typer(
    name="genrekit",
    help="Music genre classification: prepare features, train and evaluate leak-free, classify your music.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


class SafeConsole(Console):
    """A console that shows the control characters and undecodable bytes of every string it prints as
    ``\\xNN`` (:func:`genrekit._io.printable`): file names reach tables, "failed" lines and messages,
    and a name holding ``\\033[31m`` or ``\\033]0;TITLE`` must not recolour or retitle the terminal (nor
    one that is not UTF-8 crash the output). Newlines stay: messages of several lines are ours."""

    def render_str(self, text: str, **kwargs: Any) -> Text:
        return super().render_str(printable(text, keep_newlines=True), **kwargs)


def _show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int, file: Any = None, line: str | None = None) -> None:
    """Python's warning display, with file names in messages made :func:`~genrekit._io.printable`."""
    text = warnings.formatwarning(message, category, filename, lineno, line)
    (file or sys.stderr).write(printable(text, keep_newlines=True))


console = SafeConsole()


def print_table(table: Table) -> None:
    """Print ``table`` on stdout: fitted to a terminal's width, or at its full width into a pipe or file, where
    nothing reads 80 columns and a cut file name could not be read back (``genrekit predict DIR | grep``)."""
    if console.is_terminal:
        console.print(table)
        return
    natural = Measurement.get(console, console.options.update_width(100_000), table).maximum
    wide = SafeConsole(file=console.file, width=max(natural, console.width), color_system=None)
    wide.print(table)


def _print_version(value: bool) -> None:
    if value:
        from .._version import __version__

        console.print(f"genrekit {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True, help="Print genrekit's version and exit.")] = False,
) -> None:
    """Music genre classification: prepare features, train and evaluate leak-free, classify your music."""
    warnings.showwarning = _show_warning
# Messages on stderr are never wrapped: each stays one line (whole paths) in pipes and logs, where rich assumes 80 columns.
err_console = SafeConsole(stderr=True, soft_wrap=True)
F = TypeVar("F", bound=Callable[..., Any])


def reflow(doc: str | None) -> str:
    """A docstring as help text: prose paragraphs joined into one line each, so the help wraps evenly at any
    width (typer keeps the source's line breaks, then wraps again: ragged lines); indented lines
    (examples) stay as written."""
    paragraphs = inspect.cleandoc(doc or "").split("\n\n")
    return "\n\n".join(p if p.startswith(" ") else " ".join(line.strip() for line in p.splitlines()) for p in paragraphs)


def usage_word(argument: Any) -> str:
    """What a user types for a positional argument, as the usage line shows it: its metavar (or name) in
    capitals, ``...`` when it takes several, in brackets when it may be left out: ``PATH...``, ``[STORE]``.
    (typer writes a required argument as ``{PATH}``, and drops the ``...`` of one with a metavar.)"""
    word = (argument.metavar or argument.name or "").strip("[]{}").upper()
    if argument.nargs != 1:
        word += "..."
    return word if argument.required else f"[{word}]"


class Command(TyperCommand):
    """A genrekit command: typer's, with a usage line of what a user types (:func:`usage_word`)."""

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        return pieces + [usage_word(p) for p in self.get_params(ctx) if isinstance(p, TyperArgument)]


def add_commands(app: typer.Typer, *commands: Callable[..., Any]) -> None:
    """Register ``commands`` with their docstrings reflowed for ``--help`` and the usage line of :class:`Command`."""
    for command in commands:
        app.command(cls=Command, help=reflow(command.__doc__))(command)


@contextmanager
def handle_errors(command: Callable[..., Any] | None = None) -> Iterator[None]:
    """Turn genrekit errors into a one-line message and exit code 2; parameters become ``command``'s options (:func:`cli_message`)."""
    try:
        yield
    except GenrekitError as e:
        err_console.print(f"[bold red]error:[/] {escape(cli_message(e, command))}")  # [brackets] stay literal
        raise typer.Exit(2) from None
    except ModuleNotFoundError as e:  # a module of genrekit[train], imported where the command needs it
        _missing_extra(e, f"genrekit {command.__name__}" if command is not None else "this command")
    except KeyboardInterrupt as e:
        terminated = isinstance(e, Terminated)
        err_console.print(f"[yellow]{'terminated' if terminated else 'interrupted'}[/]")
        raise typer.Exit(128 + (signal.SIGTERM if terminated else signal.SIGINT)) from None


def _missing_extra(error: ModuleNotFoundError, what: str) -> NoReturn:
    """Say in one line which extra to install when ``error`` is a missing module of ``genrekit[train]``; re-raise it otherwise."""
    package = (error.name or "").partition(".")[0]
    if package not in TRAIN_EXTRA:
        raise error
    err_console.print(f"[bold red]error:[/] {escape(str(MissingDependencyError(package, what)))}")
    raise typer.Exit(2) from None


def _options_of(command: Callable[..., Any]) -> dict[str, str]:
    """Parameter name -> long option (``--n-folds``) of a typer command function, from typer's own parameter info."""
    options = {}
    for name, hint in get_type_hints(command, include_extras=True).items():
        for info in getattr(hint, "__metadata__", ()):
            if isinstance(info, OptionInfo):
                # Annotated[..., typer.Option("--format", "-f")] keeps the first name in ``default``.
                names = [info.default, *(info.param_decls or ())]
                flags = [d for d in names if isinstance(d, str) and d.startswith("--")]
                options[name] = max(flags, key=len) if flags else "--" + name.replace("_", "-")
    return options


# What a command's user typed for the library parameters a message may name, where typer's info of the command's
# own parameters does not tell (the library names them otherwise, or the option belongs to the command that made
# the input: a store's --features): command -> {library parameter: option}.
LIBRARY_OPTIONS: dict[str, dict[str, str]] = {
    "prepare": {"kind": "--features", "num_cpus": "--jobs"},
    "info": {"strategy": "--split"},
    "train": {"strategy": "--split", "num_threads": "--threads", "mixup_alpha": "--mixup", "features": "--features"},
    "evaluate": {"partition": "--split"},
    "compare": {"fmt": "--format"},
    "predict": {"fmt": "--format", "num_cpus": "--jobs"},
    "tag": {"log": "--undo"},
}


def parameter_options(command: Callable[..., Any]) -> dict[str, str]:
    """Library parameter -> the option of ``command`` that a message about it names: typer's info of the
    command's own parameters (a parameter of the same name), then :data:`LIBRARY_OPTIONS`."""
    return _options_of(command) | LIBRARY_OPTIONS.get(command.__name__, {})


def cli_message(error: GenrekitError, command: Callable[..., Any] | None) -> str:
    """``error`` in the words of ``command``'s user: the options typed where the library names its parameters.

    A :class:`~genrekit.exceptions.ParameterError` about one parameter's value becomes "The '--split' option
    must be ... Got ... instead." (without the library's "(or None)": a user leaves an option out instead);
    each :class:`~genrekit.exceptions.Mention` in a message becomes the option (``--features musicnn``).
    Parameters that ``command`` has no option for keep the library's words.
    """
    if command is None:
        return str(error)
    options = parameter_options(command)
    if isinstance(error, ParameterError) and error.parameter in options and error.allowed is not None:
        return f"The '{options[error.parameter]}' option must be {error.allowed}. Got {error.got!r} instead."
    return error.render(option_words(command))


def option_words(command: Callable[..., Any]) -> Callable[[Mention], str]:
    """How ``command``'s user reads a :class:`~genrekit.exceptions.Mention`: the option typed (``--features
    musicnn``; a flag alone for ``True``), or the library's words for a parameter without an option."""
    options = parameter_options(command)

    def said(mention: Mention) -> str:
        option = options.get(mention.parameter)
        if option is None:
            return str(mention)
        return option if mention.value is NOTHING or mention.value is True else f"{option} {mention.value}"

    return said


PLAIN_PROGRESS_SECONDS = 5.0  # how often a plain progress line is printed when stderr is not a terminal


class PlainProgress:
    """What a progress bar says, as a plain line on stderr every few seconds: for logs and pipes, where a
    bar would be control codes and no bar at all is minutes of silence. The subset of rich's
    ``Progress`` that the commands use."""

    def __init__(self, console: Console, interval: float) -> None:
        self.console = console
        self.interval = interval
        self.tasks: dict[int, dict[str, Any]] = {}
        self._last = time.monotonic()

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def add_task(self, description: str, total: float | None = None) -> TaskID:
        self.tasks[len(self.tasks)] = {"description": description, "total": total, "completed": 0, "start": time.monotonic()}
        return TaskID(len(self.tasks) - 1)

    def reset(self, task: TaskID, *, total: float | None = None, description: str | None = None) -> None:
        self.tasks[task].update(total=total, completed=0, start=time.monotonic())
        if description is not None:
            self.tasks[task]["description"] = description

    def update(self, task: TaskID, *, completed: float | None = None, total: float | None = None, description: str | None = None) -> None:
        state = self.tasks[task]
        for key, value in (("completed", completed), ("total", total), ("description", description)):
            if value is not None:
                state[key] = value
        now = time.monotonic()
        if now - self._last >= self.interval:
            self._last = now
            self.console.print(" · ".join(self._describe(t, now) for t in self.tasks.values()), markup=False, highlight=False)

    @staticmethod
    def _describe(task: dict[str, Any], now: float) -> str:
        done, total, elapsed = task["completed"], task["total"], now - task["start"]
        if not total:
            return f"{task['description']}: {done:g} done, {elapsed:.0f} s"
        left = f", about {elapsed * (total - done) / done:.0f} s left" if 0 < done < total else ""
        return f"{task['description']}: {done:g}/{total:g} ({done / total:.0%}), {elapsed:.0f} s elapsed{left}"


def new_progress(*, force: bool = False) -> Progress | PlainProgress:
    """The progress display every command uses, on stderr: on a terminal (or with ``force``) a bar with
    count, elapsed time and ETA; otherwise a plain line every ``PLAIN_PROGRESS_SECONDS``."""
    if not (err_console.is_terminal or force):
        return PlainProgress(err_console, PLAIN_PROGRESS_SECONDS)
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=err_console,
    )


@contextmanager
def progress_bar(description: str, total: int | None = None) -> Iterator[Callable[[int, int, str], None]]:
    """A progress display (see :func:`new_progress`); yields a ``(done, total, item)`` callback."""
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
    except ModuleNotFoundError as e:  # imported by a command before its handle_errors block
        command = next((a for a in sys.argv[1:] if not a.startswith("-")), "")
        try:
            _missing_extra(e, f"genrekit {command}".strip())
        except typer.Exit as done:
            sys.exit(done.exit_code)
    except SystemExit as done:
        if done.code in _INTERRUPTED:
            _exit_now(int(done.code))
        raise
    finally:
        gc.freeze()


_INTERRUPTED = (128 + signal.SIGINT, 128 + signal.SIGTERM)  # what handle_errors exits with after Ctrl-C or SIGTERM


def _release_semaphores() -> None:
    """Unlink the named semaphores of the process pool an interrupted command abandoned (its task and result
    queues' locks), as Python's exit would have.

    They are registered with multiprocessing's resource tracker, which, finding them still registered once
    this process is gone, unlinks them itself and warns "There appear to be 5 leaked semaphore objects".
    This runs the first, non-blocking step of multiprocessing's own exit handler: the finalizers of priority
    >= 0 (each semaphore's unlink, closing the queues' feeders), not those that join threads or processes,
    which are what :func:`_exit_now` must not wait for.
    """
    from multiprocessing import util

    util._run_finalizers(0)  # type: ignore[attr-defined]  # no public API runs them; multiprocessing's atexit hook does this first


def _exit_now(code: int) -> NoReturn:
    """End an interrupted command at once, its own cleanup done (outputs closed, locks released, workers
    terminated, the pool's semaphores unlinked). Python's exit would still join a process pool's manager
    thread, which can wait forever for a worker that was terminated while it held the pool's task-queue lock."""
    _release_semaphores()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: nothing more can reach it
            pass
    os._exit(code)
