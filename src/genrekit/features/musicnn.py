"""musicnn as a feature kind: its input representation, the embeddings genrekit stores, and tag scores.

The network itself (and its weights) is :mod:`genrekit.models.musicnn`; ``MusiCNN``, ``MusicnnOutput``,
``load_musicnn`` and the embedding layout are re-exported here for code written against this module.

A port of ``MSD_musicnn`` and ``MTT_musicnn`` from ``musicnn==0.1.0`` (Pons & Serra, "musicnn:
pre-trained convolutional neural networks for music audio tagging", ISMIR LBD 2019; ISC license, see
``weights/LICENSE-musicnn.txt``), trained on the Million Song Dataset (Last.fm top-50 tags) and on
MagnaTagATune (50 tags). With a few hundred labeled clips, features from networks that have heard
hundreds of thousands of songs beat any CNN trained from scratch; genrekit uses them as a feature
kind (``features.default_config("musicnn")``) and for a zero-shot baseline (:func:`tag_scores`).

The weights were converted once from the TensorFlow checkpoints by ``scripts/convert_musicnn.py``;
``tests/test_musicnn.py`` checks the port against the original's outputs. Two bugs of the original
extractor are fixed here: its ``10000 * mel.astype(float16)`` overflows to inf on loud audio (we stay in
float32), and its ``penultimate``/``cnn*`` outputs of every patch after the first are copies of patch 0.
Staying in float32 also drops the original's float16 rounding of the log-mel (about 1e-3 relative), the
one source of the port's differences from the original: tag scores within 2e-4, and within 1e-6 when
the port is fed the original's float16 input.

The input representation (log-mel patches, the feature configuration) is :mod:`genrekit.features.musicnn_input`,
in NumPy, re-exported here: classifying with an exported graph needs it without PyTorch.

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

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..audio import load_audio
from ..config import FeatureConfig
from ..exceptions import ParameterError
from .kinds import FeatureKind, register_feature_kind
from ..models.musicnn import EMBEDDING_DIM, EMBEDDING_LAYOUT, MODELS, MusiCNN, MusicnnOutput, load_musicnn
from .musicnn_input import (
    HOP_LENGTH,
    N_FFT,
    N_MELS,
    PATCH_FRAMES,
    SAMPLE_RATE,
    SEGMENT_SECONDS,
    check_config,
    default_feature_config,
    log_mel,
    model_input,
    patch_frames,
)

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

_BATCH = 32  # patches per forward pass: bounds memory on long tracks


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
        audio = load_audio(audio, sample_rate=SAMPLE_RATE)
    signal = np.asarray(audio, dtype=np.float32)
    if signal.ndim != 1:
        raise ParameterError(f"The 'audio' parameter must be a mono signal of shape (n_samples,). Got shape {signal.shape} instead.")
    min_samples = (PATCH_FRAMES - 1) * HOP_LENGTH + 1
    signal = np.pad(signal, (0, max(0, min_samples - len(signal))))
    with torch.inference_mode():
        mel = torch.from_numpy(log_mel(signal)[0])
        n_patches = (len(mel) - PATCH_FRAMES) // PATCH_FRAMES + 1
        patches = mel[: n_patches * PATCH_FRAMES].reshape(n_patches, PATCH_FRAMES, N_MELS)
        scores = [torch.sigmoid(net(patches[lo : lo + _BATCH]).logits) for lo in range(0, n_patches, _BATCH)]
    return TagScores(model, net.tags, torch.cat(scores).numpy())


def embedding_shape(config: FeatureConfig) -> tuple[int]:
    """Shape of one segment's musicnn embedding: ``(EMBEDDING_DIM,)`` = (3412,)."""
    check_config(config)
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
    check_config(config)
    segments = np.atleast_2d(np.asarray(segments, dtype=np.float32))
    frames = patch_frames(segments.shape[1])
    nets = {name: load_musicnn(name) for name in MODELS}
    out = np.empty((len(segments), EMBEDDING_DIM), dtype=np.float32)
    with torch.inference_mode():
        for lo in range(0, len(segments), _BATCH):
            mel = torch.from_numpy(log_mel(segments[lo : lo + _BATCH])[:, :frames])
            outputs = {name: net(mel) for name, net in nets.items()}
            parts = [getattr(outputs[name], layer) for name, layer, _ in EMBEDDING_LAYOUT]
            out[lo : lo + len(mel)] = torch.cat(parts, dim=1).numpy()
    return out


register_feature_kind(
    FeatureKind(
        name="musicnn", default_config=default_feature_config, shape=embedding_shape, extract=extract_embeddings, model_input=model_input
    )
)
