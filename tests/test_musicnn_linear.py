"""musicnn-linear and musicnn-zero-shot: the tag layer recomputed from the embedding, the zero-shot rule, ONNX export."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from genrekit.features import musicnn
from genrekit.exceptions import ParameterError
from genrekit.models import build_model
from genrekit.models.musicnn_linear import ZERO_SHOT_TAGS, penultimate_columns, tag_names
from genrekit.training.config import TrainConfig

from conftest import assert_onnx_matches_torch

GENRES = tuple(ZERO_SHOT_TAGS)


@pytest.fixture(scope="module")
def segments() -> np.ndarray:
    rng = np.random.default_rng(0)
    t = np.arange(48000) / 16000
    return np.stack([0.3 * np.sin(2 * np.pi * f * t) + 0.05 * rng.standard_normal(len(t)) for f in (110, 440, 1760)]).astype(np.float32)


@pytest.fixture(scope="module")
def embeddings(segments: np.ndarray) -> np.ndarray:
    return musicnn.extract_embeddings(segments, musicnn.default_feature_config())


def _tag_scores(segments: np.ndarray) -> dict[str, np.ndarray]:
    """Each network's sigmoid outputs per segment, straight from the networks."""
    mel = torch.from_numpy(musicnn.log_mel(segments)[:, : musicnn.patch_frames(segments.shape[1])])
    with torch.inference_mode():
        return {m: torch.sigmoid(musicnn.load_musicnn(m)(mel).logits).numpy() for m in musicnn.MODELS}


def test_zero_shot_model_scores_are_the_mapped_tag_scores(segments: np.ndarray, embeddings: np.ndarray) -> None:
    model = build_model("musicnn-zero-shot", (musicnn.EMBEDDING_DIM,), 10).eval()
    with torch.inference_mode():
        scores = torch.exp(model(torch.from_numpy(embeddings))).numpy()
    direct = _tag_scores(segments)
    for j, genre in enumerate(GENRES):
        tag = ZERO_SHOT_TAGS[genre]
        if tag is None:
            np.testing.assert_allclose(scores[:, j], 1e-3)
        else:
            net, name = tag.split(":")
            np.testing.assert_allclose(scores[:, j], direct[net][:, musicnn.load_musicnn(net).tags.index(name)], atol=1e-5)


def test_linear_model_reads_tag_logits_recomputed_from_the_penultimates(segments: np.ndarray, embeddings: np.ndarray) -> None:
    model = build_model("musicnn-linear", (musicnn.EMBEDDING_DIM,), 10, inputs="tags").eval()
    _, logits = model.tags(torch.from_numpy(embeddings))
    direct = _tag_scores(segments)
    np.testing.assert_allclose(torch.sigmoid(logits).numpy(), np.hstack([direct[m] for m in musicnn.MODELS]), atol=1e-5)
    assert len(penultimate_columns()) == 400 and len(tag_names()) == 100


@pytest.mark.parametrize(
    ("name", "options"), [("musicnn-linear", {}), ("musicnn-linear", {"inputs": "tags", "prior": True}), ("musicnn-zero-shot", {})]
)
def test_onnx_export_matches_torch(name: str, options: dict[str, str]) -> None:
    torch.manual_seed(0)
    model = build_model(name, (musicnn.EMBEDDING_DIM,), 10, **options).eval()
    if hasattr(model, "beta"):
        model.beta.fill_(0.7)
    assert_onnx_matches_torch(model, torch.randn(3, musicnn.EMBEDDING_DIM))


def test_wrong_input_and_training_are_refused_with_a_reason() -> None:
    with pytest.raises(ParameterError, match="musicnn embeddings"):
        build_model("musicnn-linear", (128, 130), 10)
    with pytest.raises(ParameterError, match="inputs"):
        build_model("musicnn-linear", (musicnn.EMBEDDING_DIM,), 10, inputs="everything")
    with pytest.raises(ParameterError, match="train_default_model"):
        TrainConfig(model="musicnn-linear")


def test_prior_adds_beta_times_the_zero_shot_log_scores(embeddings: np.ndarray) -> None:
    """With the layer zeroed, the prior model's logits are beta x the zero-shot model's (0 where a genre has no tag)."""
    plain = build_model("musicnn-linear", (musicnn.EMBEDDING_DIM,), 10, inputs="tags", prior=True).eval()
    with torch.no_grad():
        plain.linear.weight.zero_()
        plain.linear.bias.zero_()
        plain.beta.fill_(2.0)
    zero_shot = build_model("musicnn-zero-shot", (musicnn.EMBEDDING_DIM,), 10).eval()
    x = torch.from_numpy(embeddings)
    with torch.inference_mode():
        expected = 2.0 * zero_shot(x)
        tagged = [j for j, g in enumerate(GENRES) if ZERO_SHOT_TAGS[g]]
        torch.testing.assert_close(plain(x)[:, tagged], expected[:, tagged], atol=1e-4, rtol=1e-4)
        assert bool((plain(x)[:, [GENRES.index("disco"), GENRES.index("reggae")]] == 0).all())
