"""Genre models that read musicnn's own outputs: a linear model over its penultimate layer and tag
scores (``musicnn-linear``, the shipped default) and the zero-shot tag mapping (``musicnn-zero-shot``).

Both take the raw ``--features musicnn`` embedding (3412 values per segment, see
:data:`genrekit.models.musicnn.EMBEDDING_LAYOUT`), keep the two 200-unit penultimate layers and recompute the
100 tag logits of ``MSD_musicnn`` and ``MTT_musicnn`` from them with the networks' own output layers
(copied into the state dict, so a checkpoint is self-contained and exports to ONNX as one graph).
Tags were learned from hundreds of thousands of songs; a model that reads them, rather than the 3412
raw dimensions, has few parameters to fit on a few hundred GTZAN tracks and carries the taggers'
knowledge to music GTZAN never had (``reports/model_selection.md`` measures this).

Standardization of the 500 inputs lives inside the module (buffers), because the tag layer needs the
raw penultimate values: these models are fitted by ``scripts/train_default_model.py`` (scikit-learn's
logistic regression, converted), not by ``genrekit train``, which standardizes the whole embedding.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from ..exceptions import Mention, ParameterError
from .._text import words
from .musicnn import EMBEDDING_DIM, EMBEDDING_LAYOUT, MODELS, load_musicnn
from .registry import register_model

__all__ = ["MusicnnLinear", "MusicnnZeroShot", "TagLayer", "ZERO_SHOT_TAGS", "FITTED_BY_SCRIPT", "penultimate_columns", "tag_names"]

Inputs = Literal["tags", "penultimate+tags"]
_INPUTS: dict[str, int] = {"tags": 100, "penultimate+tags": 500}
FITTED_BY_SCRIPT = ("musicnn-linear", "musicnn-zero-shot")
"""Architectures ``genrekit train`` does not fit (they need the raw, unstandardized embedding)."""

ZERO_SHOT_TAGS: dict[str, str | None] = {
    "blues": "MSD_musicnn:blues",
    "classical": "MTT_musicnn:classical",
    "country": "MSD_musicnn:country",
    "disco": None,
    "hiphop": "MSD_musicnn:Hip-Hop",
    "jazz": "MSD_musicnn:jazz",
    "metal": "MSD_musicnn:metal",
    "pop": "MSD_musicnn:pop",
    "reggae": None,
    "rock": "MSD_musicnn:rock",
}
"""GTZAN genre -> the musicnn tag whose score stands for it (``model:tag``); MSD and MTT have no disco or reggae tag."""
_NO_TAG_SCORE = 1e-3  # what a genre without a tag scores: never the zero-shot answer, yet a finite log
_PRIOR_FLOOR = 1e-6  # smallest tag score the prior takes the log of


def penultimate_columns() -> list[int]:
    """Embedding columns of the two penultimate layers, MSD then MTT (400)."""
    cols: list[int] = []
    lo = 0
    for _, layer, size in EMBEDDING_LAYOUT:
        if layer == "penultimate":
            cols += range(lo, lo + size)
        lo += size
    return cols


def tag_names() -> list[str]:
    """The 100 tags as ``model:tag``, in the order of the recomputed logits."""
    return [f"{m}:{t}" for m in MODELS for t in load_musicnn(m).tags]


class TagLayer(nn.Module):
    """Penultimate columns of the embedding -> (penultimate, tag logits), with musicnn's output layers."""

    columns: torch.Tensor  # buffers, declared for the type checker (nn.Module.__getattr__ is untyped)
    weight: torch.Tensor
    bias: torch.Tensor

    def __init__(self) -> None:
        super().__init__()
        nets = [load_musicnn(m) for m in MODELS]
        self.register_buffer("columns", torch.tensor(penultimate_columns()))
        self.register_buffer("weight", torch.block_diag(*(n.output.weight for n in nets)).clone())
        self.register_buffer("bias", torch.cat([n.output.bias for n in nets]).clone())

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        penultimate = x.flatten(1).index_select(1, self.columns)
        return penultimate, penultimate @ self.weight.T + self.bias


def _zero_shot_selection(labels: tuple[str, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """(100, n_labels) one-hot map from tag scores to each label's tag, and 1 for labels without a tag."""
    names = tag_names()
    select = torch.zeros(len(names), len(labels))
    untagged = torch.ones(len(labels))
    for j, genre in enumerate(labels):
        tag = ZERO_SHOT_TAGS.get(genre)
        if tag is not None:
            select[names.index(tag), j] = 1.0
            untagged[j] = 0.0
    return select, untagged


class MusicnnLinear(nn.Module):
    """Standardize (penultimate, tag scores) or the tag logits, then one linear layer, optionally plus
    ``beta`` times the zero-shot prior (the log score of each genre's tag, 0 for a genre without one).

    Parameters
    ----------
    n_classes : int > 1
    inputs : {"penultimate+tags", "tags"}, default="penultimate+tags"
        ``"penultimate+tags"``: both penultimate layers (400) and the 100 tag scores (sigmoid);
        ``"tags"``: the 100 tag logits alone.
    prior : bool, default=False
        Add the zero-shot prior to the logits (its weight ``beta`` is fitted with the layer).
    labels : tuple of str, default=the ten GTZAN genres
        Output labels, to find each one's tag for the prior.
    """

    mean: torch.Tensor  # buffers, declared for the type checker (nn.Module.__getattr__ is untyped)
    scale: torch.Tensor
    select: torch.Tensor
    untagged: torch.Tensor
    beta: torch.Tensor

    def __init__(self, n_classes: int, *, inputs: Inputs = "penultimate+tags", prior: bool = False, labels: tuple[str, ...] = tuple(ZERO_SHOT_TAGS)) -> None:
        super().__init__()
        self.inputs = inputs
        self.prior = prior
        self.tags = TagLayer()
        n_in = _INPUTS[inputs]
        self.register_buffer("mean", torch.zeros(n_in))
        self.register_buffer("scale", torch.ones(n_in))
        self.linear = nn.Linear(n_in, n_classes)
        select, untagged = _zero_shot_selection(labels)
        self.register_buffer("select", select)
        self.register_buffer("untagged", untagged)
        self.register_buffer("beta", torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        penultimate, logits = self.tags(x)
        z = logits if self.inputs == "tags" else torch.cat([penultimate, torch.sigmoid(logits)], dim=1)
        out = self.linear((z - self.mean) / self.scale)
        if self.prior:  # a constructor option, not data: the exported graph is fixed
            out = out + self.beta * torch.log(torch.clamp(torch.sigmoid(logits) @ self.select + self.untagged, min=_PRIOR_FLOOR))
        return out


class MusicnnZeroShot(nn.Module):
    """The zero-shot mapping as a model: each genre's logit is the log score of its tag (:data:`ZERO_SHOT_TAGS`).

    Softmax turns the mapped tag scores into probabilities proportional to them; genres without a tag
    get a fixed score of 0.001. Nothing is trained. Labels must be the ten GTZAN genres.
    """

    select: torch.Tensor  # buffers, declared for the type checker
    floor: torch.Tensor

    def __init__(self, labels: tuple[str, ...]) -> None:
        super().__init__()
        self.tags = TagLayer()
        select, untagged = _zero_shot_selection(labels)
        self.register_buffer("select", select)
        self.register_buffer("floor", untagged * _NO_TAG_SCORE)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, logits = self.tags(x)
        return torch.log(torch.sigmoid(logits) @ self.select + self.floor)


def _check_input(input_shape: tuple[int, ...], name: str) -> None:
    if tuple(input_shape) != (EMBEDDING_DIM,):
        raise ParameterError(f"{name} reads musicnn embeddings of shape ({EMBEDDING_DIM},) (", Mention("features", "musicnn"), f"). Got {input_shape} instead.")


@register_model("musicnn-linear")
def _build_musicnn_linear(
    input_shape: tuple[int, ...], n_classes: int, *, inputs: str = "penultimate+tags", prior: bool = False, labels: tuple[str, ...] = tuple(ZERO_SHOT_TAGS)
) -> nn.Module:
    _check_input(input_shape, "musicnn-linear")
    if inputs not in _INPUTS:
        raise ParameterError(f"The 'inputs' option of musicnn-linear must be one of {words(_INPUTS)}. Got {inputs!r} instead.")
    if len(labels) != n_classes:
        raise ParameterError(f"musicnn-linear has {len(labels)} labels but was asked for {n_classes} classes.")
    return MusicnnLinear(n_classes, inputs=inputs, prior=prior, labels=tuple(labels))  # type: ignore[arg-type]  # inputs checked above


@register_model("musicnn-zero-shot")
def _build_musicnn_zero_shot(input_shape: tuple[int, ...], n_classes: int, *, labels: tuple[str, ...] = tuple(ZERO_SHOT_TAGS)) -> nn.Module:
    _check_input(input_shape, "musicnn-zero-shot")
    if len(labels) != n_classes:
        raise ParameterError(f"musicnn-zero-shot maps {len(labels)} labels but was asked for {n_classes} classes.")
    return MusicnnZeroShot(tuple(labels))
