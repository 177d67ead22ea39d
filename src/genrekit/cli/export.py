"""``genrekit export``: a model as one ONNX file that runs without PyTorch or a run folder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .._text import words
from ._app import add_commands, console, err_console, handle_errors

__all__ = ["register"]

FORMATS = ("onnx",)


def export(
    model: Annotated[str, typer.Argument(help="'default', 'zero-shot', a run folder or a model.pt file.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="The .onnx file to write.")],
    fmt: Annotated[str, typer.Option("--format", "-f", metavar="onnx", help="Export format: onnx.")] = "onnx",
) -> None:
    """Export a model to ONNX: network, standardization and softmax in the graph; labels and feature config in its metadata.

    For models over musicnn embeddings the graph holds both musicnn networks and reads log-mel patches.
    The file works wherever a model name does: genrekit predict --model model.onnx, load_model("model.onnx").

    Examples:

      genrekit export default --out default.onnx

      genrekit export runs/cnn2 --out cnn2.onnx
    """
    if fmt not in FORMATS:
        err_console.print(f"[bold red]error:[/] The '--format' option must be one of {words(FORMATS)}. Got {fmt!r} instead.")
        raise typer.Exit(2)
    if out.suffix.lower() != ".onnx":
        err_console.print(f"[bold red]error:[/] {out}: the output file must end in .onnx")
        raise typer.Exit(2)
    with handle_errors(export):
        from ..runtime.export import export_onnx
        from ..classifier import load_model

        classifier = load_model(model, backend="torch")
        path = export_onnx(classifier.checkpoint, out)
    console.print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB): {classifier.checkpoint.model_name}, {len(classifier.classes_)} labels")


def register(app: typer.Typer) -> None:
    add_commands(app, export)
