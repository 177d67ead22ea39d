"""The PyTorch musicnn port against the original package's outputs (``tests/data/musicnn_reference.npz``,
made by ``scripts/make_musicnn_reference.py``), the two fixed bugs, and the feature-kind contract."""

from __future__ import annotations

from pathlib import Path

import librosa
import numpy as np
import pytest
import torch

import genrekit
from genrekit.features import musicnn
from genrekit.config import AudioConfig, FeatureConfig
from genrekit.exceptions import ModelNotFoundError, ParameterError
from genrekit.features import default_config, extract_features, feature_shape

REFERENCE = Path(__file__).parent / "data" / "musicnn_reference.npz"
SAMPLES = Path(genrekit.__file__).parent / "samples"
KEYS = {"MSD_musicnn": "msd", "MTT_musicnn": "mtt"}


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    with np.load(REFERENCE) as data:
        return dict(data)


@pytest.fixture(scope="module")
def audio(reference: dict[str, np.ndarray]) -> np.ndarray:
    assert int(reference["sample_rate"]) == musicnn.SAMPLE_RATE
    return reference["audio"].astype(np.float32) / 32768  # what librosa.load gives for the int16 WAV


def _patch_outputs(log_mel: np.ndarray, model: str) -> musicnn.MusicnnOutput:
    n = len(log_mel) // musicnn.PATCH_FRAMES
    patches = torch.from_numpy(np.ascontiguousarray(log_mel[: n * musicnn.PATCH_FRAMES])).reshape(n, musicnn.PATCH_FRAMES, -1)
    with torch.inference_mode():
        return musicnn.load_musicnn(model)(patches)


def _assert_close_to_scale(actual: np.ndarray, expected: np.ndarray, rel: float) -> None:
    """Max absolute error within ``rel`` times the largest reference magnitude."""
    assert actual.shape == expected.shape
    err = np.abs(actual - expected).max()
    assert err <= rel * np.abs(expected).max(), f"max abs error {err:.3g}, scale {np.abs(expected).max():.3g}"


@pytest.mark.parametrize("model", musicnn.MODELS)
def test_tag_scores_match_original(model: str, reference: dict[str, np.ndarray], audio: np.ndarray) -> None:
    scores = musicnn.tag_scores(audio, model=model)
    expected = reference[f"{KEYS[model]}_taggram"]
    assert scores.taggram.shape == expected.shape == (3, 50)
    np.testing.assert_allclose(scores.taggram, expected, rtol=0, atol=1e-3)
    assert len(scores.tags) == 50 and ("classical" in scores.tags) == (model == "MTT_musicnn")


@pytest.mark.parametrize("model", musicnn.MODELS)
def test_pooled_and_penultimate_match_original(model: str, reference: dict[str, np.ndarray], audio: np.ndarray) -> None:
    # The port keeps the log-mel in float32, the original rounds it to float16: errors of ~1e-3 relative.
    out = _patch_outputs(musicnn.log_mel(audio)[0], model)
    key = KEYS[model]
    for layer in ("mean_pool", "max_pool", "penultimate"):
        _assert_close_to_scale(getattr(out, layer).numpy(), reference[f"{key}_{layer}"], 3e-3)


@pytest.mark.parametrize("model", musicnn.MODELS)
def test_network_matches_original_exactly_on_its_float16_input(
    model: str, reference: dict[str, np.ndarray], audio: np.ndarray
) -> None:
    # The original's own input representation (extractor.batch_data): isolates the network from the mel fix.
    mel = librosa.feature.melspectrogram(y=audio, sr=16000, hop_length=256, n_fft=512, n_mels=96).T
    original_input = np.log10(10000 * mel.astype(np.float16) + 1).astype(np.float32)
    out = _patch_outputs(original_input, model)
    key = KEYS[model]
    np.testing.assert_allclose(torch.sigmoid(out.logits).numpy(), reference[f"{key}_taggram"], rtol=0, atol=1e-5)
    for layer in ("mean_pool", "max_pool", "penultimate"):
        _assert_close_to_scale(getattr(out, layer).numpy(), reference[f"{key}_{layer}"], 1e-5)


def test_log_mel_matches_librosa_in_float32(audio: np.ndarray) -> None:
    mel = librosa.feature.melspectrogram(y=audio, sr=16000, hop_length=256, n_fft=512, n_mels=96).T
    np.testing.assert_allclose(musicnn.log_mel(audio)[0], np.log10(10000 * mel + 1), rtol=0, atol=1e-4)


def test_loud_input_gives_finite_values() -> None:
    t = np.arange(3 * musicnn.SAMPLE_RATE) / musicnn.SAMPLE_RATE
    loud = np.sign(np.sin(2 * np.pi * 110 * t)).astype(np.float32)  # full-scale square wave
    mel = librosa.feature.melspectrogram(y=loud, sr=16000, hop_length=256, n_fft=512, n_mels=96)
    with np.errstate(over="ignore"):
        assert not np.isfinite(np.log10(10000 * mel.astype(np.float16) + 1)).all()  # the original's bug
    assert np.isfinite(musicnn.log_mel(loud)).all()
    assert np.isfinite(musicnn.tag_scores(loud).taggram).all()
    assert np.isfinite(musicnn.extract_embeddings(loud[None], musicnn.default_feature_config())).all()


def test_each_patch_gets_its_own_penultimate(reference: dict[str, np.ndarray], audio: np.ndarray) -> None:
    # The original returned patch 0's penultimate for every patch; the reference holds the correct rows.
    for model, key in KEYS.items():
        penultimate = _patch_outputs(musicnn.log_mel(audio)[0], model).penultimate.numpy()
        assert len(penultimate) == 3
        for k in (1, 2):
            assert np.abs(penultimate[k] - penultimate[0]).max() > 0.1
        _assert_close_to_scale(penultimate, reference[f"{key}_penultimate"], 3e-3)


def test_embedding_layout_and_first_segment(reference: dict[str, np.ndarray], audio: np.ndarray) -> None:
    config = musicnn.default_feature_config()
    assert musicnn.embedding_shape(config) == (musicnn.EMBEDDING_DIM,) == (3412,)
    # A segment starting at 0 is exactly the original's first patch, block by block.
    embedding = musicnn.extract_embeddings(audio[None, : config.audio.segment_samples], config)
    assert embedding.shape == (1, 3412) and embedding.dtype == np.float32
    lo = 0
    for model, layer, size in musicnn.EMBEDDING_LAYOUT:
        _assert_close_to_scale(embedding[0, lo : lo + size], reference[f"{KEYS[model]}_{layer}"][0], 3e-3)
        lo += size
    assert lo == embedding.shape[1]


def test_extract_features_through_feature_config(rng: np.random.Generator) -> None:
    config = default_config("musicnn")
    assert config.kind == "musicnn" and config.scaling == "standard"
    assert config.audio.sample_rate == 16000 and config.audio.segment_seconds == 3.0
    assert musicnn.patch_frames(config.audio.segment_samples) == musicnn.PATCH_FRAMES
    segments = (0.1 * rng.standard_normal((5, config.audio.segment_samples))).astype(np.float32)
    features = extract_features(segments, config)
    assert features.shape == (5, *feature_shape(config)) == (5, 3412)
    assert features.dtype == np.float32 and np.isfinite(features).all()
    # Batching over patches does not change a segment's embedding.
    np.testing.assert_allclose(features[3:4], extract_features(segments[3:4], config), rtol=0, atol=1e-4)


def test_feature_config_round_trips_and_allows_overlap() -> None:
    config = musicnn.default_feature_config(audio=AudioConfig(sample_rate=16000, hop_seconds=1.5))
    assert FeatureConfig.from_dict(config.to_dict()) == config
    assert config.audio.hop_seconds == 1.5 and config.n_mels == 96


@pytest.mark.parametrize(
    "overrides",
    [{"n_mels": 128}, {"n_fft": 1024}, {"audio": AudioConfig(sample_rate=22050)}, {"f_max": 4000.0}, {"kind": "logmel"}, {"scaling": "seed"}],
)
def test_config_the_network_cannot_use_is_rejected(overrides: dict) -> None:
    with pytest.raises(ParameterError):
        musicnn.default_feature_config(**overrides)
    with pytest.raises(ParameterError):
        musicnn.embedding_shape(FeatureConfig(**{"kind": "musicnn", "scaling": "standard", **overrides}))


def test_unknown_model_lists_known_ones() -> None:
    with pytest.raises(ModelNotFoundError, match="MSD_musicnn"):
        musicnn.load_musicnn("MSD_vgg")


def test_weights_load_once_and_frozen() -> None:
    net = musicnn.load_musicnn("MTT_musicnn")
    assert net is musicnn.load_musicnn("MTT_musicnn")
    assert not net.training and not any(p.requires_grad for p in net.parameters())


def test_tag_scores_of_short_audio_and_bad_shapes() -> None:
    short = np.zeros(musicnn.SAMPLE_RATE, dtype=np.float32)
    assert musicnn.tag_scores(short).taggram.shape == (1, 50)
    with pytest.raises(ParameterError):
        musicnn.tag_scores(np.zeros((2, 48000), dtype=np.float32))


@pytest.mark.slow
def test_real_music_gets_sensible_tags() -> None:
    classical = musicnn.tag_scores(SAMPLES / "beethoven_symphony9_mvt2.ogg", model="MTT_musicnn").as_dict()
    assert max(classical, key=classical.get) == "classical"
    rock = musicnn.tag_scores(SAMPLES / "hedgewars_rock.ogg", model="MSD_musicnn").as_dict()
    assert max(rock, key=rock.get) == "rock"


@pytest.mark.parametrize("hidden", [0, 32])
def test_musicnn_head_maps_embeddings_to_logits(hidden: int) -> None:
    from genrekit.models import available_models, build_model, count_parameters

    assert "musicnn-head" in available_models()
    model = build_model("musicnn-head", (musicnn.EMBEDDING_DIM,), 10, hidden=hidden).eval()
    assert model(torch.randn(4, musicnn.EMBEDDING_DIM)).shape == (4, 10)
    expected = 3412 * 10 + 10 if hidden == 0 else 3412 * 32 + 32 + 32 * 10 + 10
    assert count_parameters(model) == expected


def test_musicnn_head_exports_to_onnx() -> None:
    import io
    import warnings

    import onnx

    from genrekit.models import build_model

    model = build_model("musicnn-head", (musicnn.EMBEDDING_DIM,), 10, hidden=16).eval()
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(model, (torch.randn(2, musicnn.EMBEDDING_DIM),), buffer, dynamo=False, dynamic_axes={"x": {0: "batch"}}, input_names=["x"])
    onnx.checker.check_model(onnx.load_from_string(buffer.getvalue()))


@pytest.mark.parametrize("options", [{"hidden": -1}, {"dropout": 1.0}])
def test_musicnn_head_rejects_bad_options(options: dict) -> None:
    from genrekit.models import build_model

    with pytest.raises(ParameterError):
        build_model("musicnn-head", (musicnn.EMBEDDING_DIM,), 10, **options)
