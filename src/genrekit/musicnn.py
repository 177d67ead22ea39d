"""musicnn in PyTorch: pretrained music-tagging CNNs used as a frozen front end.

A port of ``MSD_musicnn`` and ``MTT_musicnn`` from ``musicnn==0.1.0`` (Pons & Serra, "musicnn:
pre-trained convolutional neural networks for music audio tagging", ISMIR LBD 2019; ISC license, see
``weights/LICENSE-musicnn.txt``), trained on the Million Song Dataset (Last.fm top-50 tags) and on
MagnaTagATune (50 tags). With a few hundred labeled clips, features from networks that have heard
hundreds of thousands of songs beat any CNN trained from scratch; genrekit uses them as a feature
kind (``FeatureConfig.for_kind("musicnn")``) and for a zero-shot baseline (:func:`tag_scores`).

The weights were converted once from the TensorFlow checkpoints by ``scripts/convert_musicnn.py``;
``tests/test_musicnn.py`` checks the port against the original's outputs. Two bugs of the original
extractor are fixed here: its ``10000 * mel.astype(float16)`` overflows to inf on loud audio (we stay in
float32), and its ``penultimate``/``cnn*`` outputs of every patch after the first are copies of patch 0.
Staying in float32 also drops the original's float16 rounding of the log-mel (about 1e-3 relative), the
one source of the port's differences from the original: tag scores within 2e-4, and within 1e-6 when
the port is fed the original's float16 input.

Input representation (the original's ``extractor.batch_data``): 16 kHz mono, centered STFT with
n_fft 512, hop 256, periodic Hann window and zero padding (librosa >= 0.10), power 2, 96 Slaney mel
bands from 0 to 8 kHz, then ``log10(10000 * mel + 1)``; patches of 187 frames (3 s).

Embedding (``kind="musicnn"``): for each 3 s segment, the concatenation over ``MSD_musicnn`` then
``MTT_musicnn`` of the penultimate layer (200, the batch-normalized dense layer the tag classifier
reads) and the temporal mean and max pools of the dense mid-end feature map (753 each: front end 561 +
three mid-end layers of 64), 2 x 1706 = 3412 values; :data:`EMBEDDING_LAYOUT` gives the column blocks.
The penultimate layer is the most tag-specific summary; the pooled mid-end maps keep the timbre and
rhythm detail that a 200-unit bottleneck trained for other tags may discard; the two training sets
cover different vocabularies (MSD: genres; MTT: instruments, classical). Stored in float16, 3412 values
cost 6.8 kB per segment.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from safetensors import safe_open
from torch import nn
from torch.nn import functional as F

from .config import AudioConfig, FeatureConfig
from .exceptions import ModelNotFoundError, ParameterError

__all__ = [
    "SAMPLE_RATE",
    "N_FFT",
    "HOP_LENGTH",
    "N_MELS",
    "SEGMENT_SECONDS",
    "PATCH_FRAMES",
    "MODELS",
    "EMBEDDING_LAYOUT",
    "EMBEDDING_DIM",
    "MusiCNN",
    "MusicnnOutput",
    "TagScores",
    "load_musicnn",
    "log_mel",
    "patch_frames",
    "tag_scores",
    "default_feature_config",
    "embedding_shape",
    "extract_embeddings",
]

SAMPLE_RATE = 16000
N_FFT = 512
HOP_LENGTH = 256
N_MELS = 96
SEGMENT_SECONDS = 3.0
PATCH_FRAMES = 187  # 3 s: librosa.time_to_frames(3, sr=16000, n_fft=512, hop_length=256) + 1
MODELS: tuple[str, ...] = ("MSD_musicnn", "MTT_musicnn")
_WEIGHT_FILES = {"MSD_musicnn": "musicnn_msd.safetensors", "MTT_musicnn": "musicnn_mtt.safetensors"}
_BN_EPS = 1e-3  # tf.layers.batch_normalization's default
_N_TIMBRAL = 204  # int(1.6 * 128) filters per timbral (vertical) filter shape
_N_TEMPORAL = 51  # int(1.6 * 32) filters per temporal (horizontal) filter length
_TIMBRAL_HEIGHTS = (0.4, 0.7)  # fractions of the mel axis: 38 and 67 bands
_TEMPORAL_LENGTHS = (128, 64, 32)  # frames
_N_MIDEND = 64
_N_PENULTIMATE = 200
_N_FRONTEND = 2 * _N_TIMBRAL + 3 * _N_TEMPORAL  # 561
_N_POOLED = _N_FRONTEND + 3 * _N_MIDEND  # 753
_BATCH = 32  # patches per forward pass: bounds memory on long tracks

EMBEDDING_LAYOUT: tuple[tuple[str, str, int], ...] = tuple(
    (model, layer, size)
    for model in MODELS
    for layer, size in (("penultimate", _N_PENULTIMATE), ("mean_pool", _N_POOLED), ("max_pool", _N_POOLED))
)
"""(model, layer, width) of each block of embedding columns, in order."""
EMBEDDING_DIM = sum(size for _, _, size in EMBEDDING_LAYOUT)


class _ConvBlock(nn.Module):
    """Convolution, ReLU, then batch normalization: musicnn normalizes after the activation."""

    def __init__(self, conv: nn.Module, bn: nn.Module) -> None:
        super().__init__()
        self.conv = conv
        self.bn = bn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(F.relu(self.conv(x)))

    def frequency_max(self, x: torch.Tensor) -> torch.Tensor:
        """``forward(x).amax(dim=3)`` for a front-end block in eval mode, reordered to cost less.

        ReLU, the conv bias and eval-mode batch norm are monotonic per channel (increasing, or
        decreasing where the norm's scale is negative), so the maximum over frequency can be taken on
        the raw convolution first and the three applied to the pooled map only: 96/38/67 times fewer
        elementwise operations, the same result up to float rounding. A decreasing channel needs the
        minimum instead, found as the maximum of the convolution by the negated filter.
        """
        scale = self.bn.weight * torch.rsqrt(self.bn.running_var + self.bn.eps)
        sign = torch.where(scale >= 0, 1.0, -1.0)
        extreme = F.conv2d(x, self.conv.weight * sign[:, None, None, None]).amax(dim=3) * sign[:, None]
        return F.relu(extreme + self.conv.bias[:, None]) * scale[:, None] + (self.bn.bias - self.bn.running_mean * scale)[:, None]


class MusicnnOutput(NamedTuple):
    """What one forward pass gives, per patch."""

    logits: torch.Tensor  # (batch, n_tags); sigmoid gives the tag scores
    penultimate: torch.Tensor  # (batch, 200)
    mean_pool: torch.Tensor  # (batch, 753)
    max_pool: torch.Tensor  # (batch, 753)


class MusiCNN(nn.Module):
    """The musicnn architecture (``models.build_musicnn`` with 64 mid-end filters and 200 dense units).

    Front end: batch norm of the log-mel input, then musically motivated filters, each max-pooled over
    the whole frequency axis: vertical "timbral" filters (7 frames x 38 and 67 bands, 204 each) and
    horizontal "temporal" filters (128, 64, 32 frames x 1 band, 51 each). Mid end: three 1-D
    convolutions (7 frames, 64 filters), the last two residual. Back end: temporal max and mean pools of
    the concatenated front-end and mid-end maps, batch norm, dense 200 + ReLU + batch norm (the
    penultimate layer), dense to the tags. Dropout is omitted: the port is for inference only.

    Parameters
    ----------
    n_tags : int, default=50
    tags : tuple of str, default=()
        Tag names in output order; informational, stored by :func:`load_musicnn`.
    """

    def __init__(self, n_tags: int = 50, *, tags: tuple[str, ...] = ()) -> None:
        super().__init__()
        self.tags = tags
        self.input_bn = nn.BatchNorm2d(1, eps=_BN_EPS)
        self.timbral = nn.ModuleList(
            _ConvBlock(nn.Conv2d(1, _N_TIMBRAL, (7, int(f * N_MELS))), nn.BatchNorm2d(_N_TIMBRAL, eps=_BN_EPS))
            for f in _TIMBRAL_HEIGHTS
        )
        self.temporal = nn.ModuleList(
            _ConvBlock(nn.Conv2d(1, _N_TEMPORAL, (k, 1)), nn.BatchNorm2d(_N_TEMPORAL, eps=_BN_EPS)) for k in _TEMPORAL_LENGTHS
        )
        self.midend = nn.ModuleList(
            _ConvBlock(nn.Conv1d(n_in, _N_MIDEND, 7, padding=3), nn.BatchNorm1d(_N_MIDEND, eps=_BN_EPS))
            for n_in in (_N_FRONTEND, _N_MIDEND, _N_MIDEND)
        )
        self.pool_bn = nn.BatchNorm1d(2 * _N_POOLED, eps=_BN_EPS)
        self.dense = nn.Linear(2 * _N_POOLED, _N_PENULTIMATE)
        self.dense_bn = nn.BatchNorm1d(_N_PENULTIMATE, eps=_BN_EPS)
        self.output = nn.Linear(_N_PENULTIMATE, n_tags)

    def forward(self, x: torch.Tensor) -> MusicnnOutput:
        """Map log-mel patches of shape (batch, frames, 96) to :class:`MusicnnOutput`."""
        x = self.input_bn(x.unsqueeze(1))  # (batch, 1, frames, mels)
        padded = F.pad(x, (0, 0, 3, 3))  # the original pads time by 3 and convolves "valid"
        front = [block.frequency_max(padded) for block in self.timbral]
        for block, length in zip(self.temporal, _TEMPORAL_LENGTHS):
            before = (length - 1) // 2  # TensorFlow "same": the extra frame of an even kernel goes after
            front.append(block.frequency_max(F.pad(x, (0, 0, before, length - 1 - before))))
        h = torch.cat(front, dim=1)  # (batch, 561, frames)
        maps = [h]
        h = self.midend[0](h)
        maps.append(h)
        for block in self.midend[1:]:
            h = block(h) + h
            maps.append(h)
        feature_map = torch.cat(maps, dim=1)  # (batch, 753, frames)
        max_pool = feature_map.amax(dim=2)
        mean_pool = feature_map.mean(dim=2)
        pooled = torch.stack([max_pool, mean_pool], dim=2).flatten(1)  # TF's concat + flatten interleaves them
        penultimate = self.dense_bn(F.relu(self.dense(self.pool_bn(pooled))))
        return MusicnnOutput(self.output(penultimate), penultimate, mean_pool, max_pool)


@lru_cache(maxsize=None)
def load_musicnn(name: str = "MSD_musicnn") -> MusiCNN:
    """The pretrained model ``name`` in eval mode with gradients off, loaded once per process.

    The returned module is shared by every caller in the process: copy it (``copy.deepcopy``) before
    changing it, e.g. to fine-tune.

    Parameters
    ----------
    name : {"MSD_musicnn", "MTT_musicnn"}, default="MSD_musicnn"

    Raises
    ------
    ModelNotFoundError
        ``name`` is not a shipped musicnn model, or its weight file is missing from the installation.
    """
    if name not in _WEIGHT_FILES:
        raise ModelNotFoundError(f"musicnn model {name!r} not found; available models: {', '.join(MODELS)}")
    resource = resources.files("genrekit") / "weights" / _WEIGHT_FILES[name]
    if not resource.is_file():
        raise ModelNotFoundError(f"{resource}: the musicnn weights are missing; reinstall genrekit")
    with resources.as_file(resource) as path, safe_open(str(path), framework="pt") as f:
        tags = tuple(json.loads(f.metadata()["tags"]))
        weights = {key: f.get_tensor(key) for key in f.keys()}  # noqa: SIM118 (safe_open is not a Mapping)
    model = MusiCNN(len(tags), tags=tags)
    model.load_state_dict(model.state_dict() | weights)  # keeps torch's num_batches_tracked, rejects strays
    return model.eval().requires_grad_(False)


def patch_frames(n_samples: int) -> int:
    """Frames musicnn feeds per patch of ``n_samples`` (187 for 3 s), as its extractor counts them."""
    return (n_samples - N_FFT // 2) // HOP_LENGTH + 1


def _log_mel(audio: torch.Tensor) -> torch.Tensor:
    basis = _mel_basis()
    spec = torch.stft(
        audio, N_FFT, hop_length=HOP_LENGTH, window=torch.hann_window(N_FFT), center=True, pad_mode="constant", return_complex=True
    )
    mel = torch.matmul(basis, spec.real.square() + spec.imag.square())
    return torch.log10(10000.0 * mel + 1.0).transpose(1, 2)


@lru_cache(maxsize=1)
def _mel_basis() -> torch.Tensor:
    from .features import mel_filterbank

    return torch.tensor(mel_filterbank(default_feature_config()))


def log_mel(audio: np.ndarray) -> np.ndarray:
    """musicnn's input representation of one signal or a batch of equal-length signals at 16 kHz.

    ``log10(10000 * mel + 1)`` computed in float32, so loud audio stays finite (the original casts the
    mel power to float16 first, which overflows to inf above 6.55, and keeps the result in float16).

    Parameters
    ----------
    audio : ndarray of shape (n_samples,) or (n_signals, n_samples)

    Returns
    -------
    ndarray of shape (n_signals, 1 + n_samples // 256, 96), float32
    """
    with torch.inference_mode():
        return _log_mel(torch.from_numpy(np.atleast_2d(np.asarray(audio, dtype=np.float32)))).numpy()


@dataclass(frozen=True)
class TagScores:
    """Tag probabilities of consecutive 3 s patches of one signal (the original's "taggram").

    Attributes
    ----------
    model : str
    tags : tuple of str
    taggram : ndarray of shape (n_patches, n_tags)
        Sigmoid outputs in [0, 1] per patch.
    """

    model: str
    tags: tuple[str, ...]
    taggram: np.ndarray

    @property
    def mean(self) -> np.ndarray:
        """Scores averaged over patches, shape (n_tags,)."""
        return self.taggram.mean(axis=0)

    def as_dict(self) -> dict[str, float]:
        """Patch-averaged score of each tag."""
        return dict(zip(self.tags, self.mean.tolist()))


def tag_scores(audio: str | Path | np.ndarray, *, model: str = "MSD_musicnn") -> TagScores:
    """Tag a whole signal as the original extractor does.

    The log-mel of the whole signal is cut into consecutive, non-overlapping 187-frame patches (a tail
    shorter than a patch is dropped; a signal shorter than one patch is zero-padded to one).

    Parameters
    ----------
    audio : path or ndarray of shape (n_samples,)
        A file (decoded to mono 16 kHz) or a mono signal already at 16 kHz.
    model : {"MSD_musicnn", "MTT_musicnn"}, default="MSD_musicnn"

    Returns
    -------
    TagScores

    Raises
    ------
    AudioDecodeError
        ``audio`` is a path that cannot be decoded.
    ParameterError
        ``audio`` is an array that is not one-dimensional.
    """
    net = load_musicnn(model)
    if isinstance(audio, (str, Path)):
        from .audio import load_audio

        audio = load_audio(audio, sample_rate=SAMPLE_RATE)
    signal = np.asarray(audio, dtype=np.float32)
    if signal.ndim != 1:
        raise ParameterError(f"The 'audio' parameter must be a mono signal of shape (n_samples,). Got shape {signal.shape} instead.")
    min_samples = (PATCH_FRAMES - 1) * HOP_LENGTH + 1
    signal = np.pad(signal, (0, max(0, min_samples - len(signal))))
    with torch.inference_mode():
        mel = _log_mel(torch.from_numpy(signal)[None])[0]
        n_patches = (len(mel) - PATCH_FRAMES) // PATCH_FRAMES + 1
        patches = mel[: n_patches * PATCH_FRAMES].reshape(n_patches, PATCH_FRAMES, N_MELS)
        scores = [torch.sigmoid(net(patches[lo : lo + _BATCH]).logits) for lo in range(0, n_patches, _BATCH)]
    return TagScores(model, net.tags, torch.cat(scores).numpy())


def default_feature_config(**overrides: Any) -> FeatureConfig:
    """The feature configuration of ``kind="musicnn"``: 16 kHz audio in 3 s segments, musicnn's mel.

    Parameters
    ----------
    **overrides
        :class:`FeatureConfig` fields; ``audio=AudioConfig(sample_rate=16000, hop_seconds=1.5)`` gives
        overlapping segments, for example. The mel parameters are the network's and cannot change.
        ``scaling`` is ``"standard"``: training standardizes every embedding dimension with
        training-split statistics that travel in the model checkpoint (``"seed"`` scaling is a log-mel
        notion and is rejected); ``top_db`` does not apply.

    Raises
    ------
    ParameterError
        An override contradicts what the network was trained on.
    """
    values: dict[str, Any] = {
        "kind": "musicnn",
        "n_fft": N_FFT,
        "hop_length": HOP_LENGTH,
        "n_mels": N_MELS,
        "f_min": 0.0,
        "f_max": None,
        "scaling": "standard",
        "audio": AudioConfig(sample_rate=SAMPLE_RATE, segment_seconds=SEGMENT_SECONDS, hop_seconds=SEGMENT_SECONDS),
    }
    values.update(overrides)
    config = FeatureConfig(**values)
    _check_config(config)
    return config


def _check_config(config: FeatureConfig) -> None:
    required = {
        "kind": "musicnn",
        "n_fft": N_FFT,
        "hop_length": HOP_LENGTH,
        "n_mels": N_MELS,
        "f_min": 0.0,
        "scaling": "standard",
        "audio.sample_rate": SAMPLE_RATE,
    }
    actual = {**{k: getattr(config, k) for k in required if "." not in k}, "audio.sample_rate": config.audio.sample_rate}
    for name, value in required.items():
        if actual[name] != value:
            raise ParameterError(
                f"musicnn features need {name}={value!r} (the network's input); got {actual[name]!r}. "
                "Use FeatureConfig.for_kind('musicnn')."
            )
    if config.f_max not in (None, SAMPLE_RATE / 2):
        raise ParameterError(f"musicnn features need f_max=None (8000 Hz); got {config.f_max!r}.")
    if config.audio.segment_samples < N_FFT:
        raise ParameterError(
            f"musicnn features need segments of at least {N_FFT / SAMPLE_RATE:g} s; got segment_seconds={config.audio.segment_seconds!r}."
        )


def embedding_shape(config: FeatureConfig) -> tuple[int]:
    """Shape of one segment's musicnn embedding: ``(EMBEDDING_DIM,)`` = (3412,)."""
    _check_config(config)
    return (EMBEDDING_DIM,)


def extract_embeddings(segments: np.ndarray, config: FeatureConfig) -> np.ndarray:
    """musicnn embeddings of equal-length segments, one patch per segment (see the module docstring).

    Each segment's log-mel is computed on its own and cut to :func:`patch_frames` frames (187 for 3 s),
    so a segment gives the patch the original would cut from a track starting at that segment.

    Parameters
    ----------
    segments : ndarray of shape (n_segments, n_samples)
        Mono audio at 16 kHz.
    config : FeatureConfig
        A musicnn configuration, see :func:`default_feature_config`.

    Returns
    -------
    ndarray of shape (n_segments, EMBEDDING_DIM), float32
    """
    _check_config(config)
    segments = np.atleast_2d(np.asarray(segments, dtype=np.float32))
    frames = patch_frames(segments.shape[1])
    nets = {name: load_musicnn(name) for name in MODELS}
    out = np.empty((len(segments), EMBEDDING_DIM), dtype=np.float32)
    with torch.inference_mode():
        for lo in range(0, len(segments), _BATCH):
            mel = _log_mel(torch.from_numpy(segments[lo : lo + _BATCH]))[:, :frames]
            outputs = {name: net(mel) for name, net in nets.items()}
            parts = [getattr(outputs[name], layer) for name, layer, _ in EMBEDDING_LAYOUT]
            out[lo : lo + len(mel)] = torch.cat(parts, dim=1).numpy()
    return out
