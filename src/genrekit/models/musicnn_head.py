"""``musicnn-head``: a small classifier over frozen musicnn embeddings (``--features musicnn`` stores).

The embeddings (:mod:`genrekit.features.musicnn`) already separate genres well, so the head stays small: with a
few hundred training tracks, a bigger one only memorizes them. Standardization is not part of the
module: musicnn stores use ``scaling="standard"``, so training learns per-dimension mean/std on the
training split and the checkpoint applies them before ``forward``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .._params import Constraint, Interval, check_values
from .registry import register_model

__all__ = ["MusicnnHead"]

HIDDEN = 0
DROPOUT = 0.5


class MusicnnHead(nn.Module):
    """Dropout + linear (``hidden=0``, a regularized multinomial logistic regression), or one hidden
    ReLU layer with dropout before each linear layer (``hidden > 0``).

    Parameters
    ----------
    n_features : int > 0
        Input width (3412 for the default musicnn embedding); inputs of any shape are flattened.
    n_classes : int > 1
    hidden : int >= 0, default=0
    dropout : float in [0, 1), default=0.5
        Input dropout: with thousands of correlated dimensions it acts like feature bagging.
    """

    def __init__(self, n_features: int, n_classes: int, *, hidden: int = HIDDEN, dropout: float = DROPOUT) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten(), nn.Dropout(dropout)]
        if hidden:
            layers += [nn.Linear(n_features, hidden), nn.ReLU(), nn.Dropout(dropout)]
        layers.append(nn.Linear(hidden or n_features, n_classes))
        self.classifier = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(x)


_OPTIONS: dict[str, Constraint] = {"hidden": Interval(0, None, integer=True), "dropout": Interval(0, 1)}


@register_model("musicnn-head")
def _build_musicnn_head(
    input_shape: tuple[int, ...], n_classes: int, *, hidden: int = HIDDEN, dropout: float = DROPOUT
) -> nn.Module:
    check_values({"hidden": hidden, "dropout": dropout}, _OPTIONS, owner="musicnn-head")
    return MusicnnHead(math.prod(input_shape), n_classes, hidden=hidden, dropout=dropout)
