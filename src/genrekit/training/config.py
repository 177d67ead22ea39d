"""The training configuration: everything that defines a run besides the data, validated once.

A run folder's ``config.json`` holds it (:func:`genrekit.training.runs.run_config` reads it back), and
so does every checkpoint's metadata.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Literal

from .._params import Constraint, Interval, OneOf, check_params, from_dict
from ..datasets.splits import SplitConfig
from ..exceptions import Mention, ParameterError
from ..models.musicnn_linear import FITTED_BY_SCRIPT
from .augment import AugmentConfig

__all__ = ["EPOCHS", "BATCH_SIZE", "LEARNING_RATE", "TrainConfig"]

EPOCHS = 40
BATCH_SIZE = 64
LEARNING_RATE = 1e-4


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run besides the data. Defaults are the original's.

    Parameters
    ----------
    model : str, default="cnn2"
        Registered architecture (:func:`genrekit.models.available_models`).
    model_options : dict, default={}
        Keyword options for the model builder.
    split : SplitConfig
        Track-level split (or the original's ``leaky-segments``); training uses ``train`` and
        ``val``; ``test`` is never touched here.
    epochs : int > 0, default=40
    batch_size : int > 0, default=64
    lr : float > 0, default=1e-4
        Adam(W) learning rate.
    weight_decay : float >= 0, default=0
        Decoupled weight decay (AdamW); 0 is exactly the original's Adam.
    label_smoothing : float in [0, 1), default=0
    class_weighting : {"none", "balanced"}, default="none"
        ``balanced`` weights the loss by ``n / (n_classes * count)`` of training segments per class,
        for imbalanced sets such as the dev set.
    lr_schedule : {"none", "cosine", "plateau"}, default="none"
        ``cosine`` anneals to 0 over ``epochs``; ``plateau`` halves the rate after 2 epochs
        without validation-loss improvement.
    patience : int > 0 or None, default=None
        Early stopping: stop after this many epochs without validation-loss improvement.
    keep : {"best", "last"}, default="best"
        What ``model.pt`` holds: the epoch with the lowest validation loss, or the last epoch.
        ``last`` keeps the validation partition out of every decision, so its numbers stay honest.
    seed : int, default=0
        Seeds initialization, data order, augmentation and dropout.
    num_threads : int > 0 or None, default=None
        torch CPU threads; None leaves torch's default.
    precision : {"fp32", "bf16"}, default="fp32"
        ``bf16`` runs the forward pass under bfloat16 autocast (weights, optimizer and loss stay fp32):
        ~1.5x faster steps than fp32 on CPUs with native bf16 (AVX512-BF16, AMX), slower on others.
        Validation accuracy matched fp32 within noise in ``benchmarks/bench_training.py``.
    augment : AugmentConfig
        On-the-fly augmentation (off by default).
    """

    model: str = "cnn2"
    model_options: dict[str, Any] = field(default_factory=dict)
    split: SplitConfig = field(default_factory=SplitConfig)
    epochs: int = EPOCHS
    batch_size: int = BATCH_SIZE
    lr: float = LEARNING_RATE
    weight_decay: float = 0.0
    label_smoothing: float = 0.0
    class_weighting: Literal["none", "balanced"] = "none"
    lr_schedule: Literal["none", "cosine", "plateau"] = "none"
    patience: int | None = None
    keep: Literal["best", "last"] = "best"
    seed: int = 0
    num_threads: int | None = None
    precision: Literal["fp32", "bf16"] = "fp32"
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    _constraints: ClassVar[dict[str, Constraint]] = {
        "epochs": Interval(0, None, closed="neither", integer=True),
        "batch_size": Interval(0, None, closed="neither", integer=True),
        "lr": Interval(0, None, closed="neither"),
        "weight_decay": Interval(0, None),
        "label_smoothing": Interval(0, 1),
        "class_weighting": OneOf(("none", "balanced")),
        "lr_schedule": OneOf(("none", "cosine", "plateau")),
        "patience": Interval(1, None, integer=True, optional=True),
        "keep": OneOf(("best", "last")),
        "seed": Interval(integer=True),
        "num_threads": Interval(1, None, integer=True, optional=True),
        "precision": OneOf(("fp32", "bf16")),
    }

    def __post_init__(self) -> None:
        check_params(self, self._constraints)
        if self.model in FITTED_BY_SCRIPT:
            raise ParameterError(
                Mention("model", self.model), " is not trained by 'genrekit train': it reads the raw musicnn embedding, which "
                "training standardizes. scripts/train_default_model.py fits it; use musicnn-head to train on a musicnn store."
            )

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["split"] = self.split.to_dict()
        data["augment"] = self.augment.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Rebuild a saved config; unknown keys (nested ones too) are one-line errors naming them."""
        values = dict(data) if isinstance(data, dict) else data
        if isinstance(values, dict) and isinstance(values.get("augment"), dict):
            values["augment"] = AugmentConfig.from_dict(values["augment"])
        return from_dict(cls, values, what="training config", nested={"split": SplitConfig})
