"""The registry of architectures: every model module registers a builder under a name (``cnn1``, ``cnn2``, ...).

Builders take the input shape (one segment's features), the number of classes and keyword options,
and return an ``nn.Module`` mapping a float tensor of shape (batch, *input_shape) to logits of shape
(batch, n_classes). ``forward`` holds no data-dependent Python control flow, so models export to ONNX.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from ..exceptions import Mention, ModelNotFoundError

__all__ = ["register_model", "build_model", "available_models", "count_parameters"]

ModelBuilder = Callable[..., nn.Module]
_REGISTRY: dict[str, ModelBuilder] = {}


def register_model(name: str) -> Callable[[ModelBuilder], ModelBuilder]:
    """Decorator adding a builder ``f(input_shape, n_classes, **options) -> nn.Module`` to the registry."""

    def decorator(builder: ModelBuilder) -> ModelBuilder:
        _REGISTRY[name] = builder
        return builder

    return decorator


def available_models() -> list[str]:
    return sorted(_REGISTRY)


def build_model(name: str, input_shape: tuple[int, ...], n_classes: int, **options: Any) -> nn.Module:
    """Build a registered architecture.

    Raises
    ------
    ModelNotFoundError
        ``name`` is not registered; the message lists the names that are.
    """
    if name not in _REGISTRY:
        raise ModelNotFoundError(Mention("model", text="Model"), f" {name!r} not found; available models: {', '.join(available_models())}")
    return _REGISTRY[name](tuple(input_shape), n_classes, **options)


def count_parameters(model: nn.Module, *, trainable_only: bool = True) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
