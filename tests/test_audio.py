"""Decoding any supported file to mono float32 at 22050 Hz, and cutting it into fixed windows."""

from __future__ import annotations

import warnings
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import given, settings
from hypothesis import strategies as st

from genrekit.audio import (
    Segmenter,
    is_audio_file,
    load_audio,
    load_segments,
    min_cover_samples,
    segment_audio,
    segment_starts,
    stream_audio,
)
from genrekit.config import SAMPLE_RATE, AudioConfig
from genrekit.exceptions import AudioDecodeError, AudioWarning, ParameterError

FORMATS = {"wav": "WAV", "flac": "FLAC", "ogg": "OGG", "au": "AU", "mp3": "MP3"}


def _tone(freq: float, seconds: float, sample_rate: int, channels: int) -> np.ndarray:
    t = np.arange(int(round(seconds * sample_rate))) / sample_rate
    y = 0.4 * np.sin(2 * np.pi * freq * t)
    return np.stack([y, 0.5 * y][:channels], axis=1).astype(np.float32) if channels > 1 else y.astype(np.float32)


def _write(path: Path, y: np.ndarray, sample_rate: int, fmt: str) -> Path:
    if fmt == "MP3" and "MP3" not in sf.available_formats():
        pytest.skip(f"libsndfile {sf.__libsndfile_version__} cannot write MP3")
    sf.write(path, y, sample_rate, format=fmt)
    return path


def _peak_hz(y: np.ndarray, sample_rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(y * np.hanning(len(y))))
    return float(np.fft.rfftfreq(len(y), 1 / sample_rate)[np.argmax(spectrum)])


@pytest.mark.parametrize("ext", sorted(FORMATS))
@pytest.mark.parametrize("sample_rate", [8000, 22050, 44100, 48000])
@pytest.mark.parametrize("channels", [1, 2])
def test_decode_any_format_rate_and_channels(tmp_path: Path, ext: str, sample_rate: int, channels: int) -> None:
    path = _write(tmp_path / f"tone.{ext}", _tone(440.0, 2.0, sample_rate, channels), sample_rate, FORMATS[ext])
    y = load_audio(path, sample_rate=SAMPLE_RATE)
    assert y.dtype == np.float32 and y.ndim == 1
    # lossy codecs add a few ms of encoder delay/padding; lossless ones are exact to a sample
    tolerance = 0.06 if ext in ("mp3", "ogg") else 1 / sample_rate + 1 / SAMPLE_RATE
    assert abs(len(y) / SAMPLE_RATE - 2.0) <= tolerance
    assert np.isfinite(y).all() and 0.1 < np.abs(y).max() <= 1.0
    assert abs(_peak_hz(y, SAMPLE_RATE) - 440.0) < 2.0


@pytest.mark.parametrize("ext", ["WAV", "Flac", "OGG", "Au", "MP3"])
def test_decode_upper_and_mixed_case_extensions(tmp_path: Path, ext: str) -> None:
    path = _write(tmp_path / f"tone.{ext}", _tone(440.0, 1.0, 22050, 1), 22050, FORMATS[ext.lower()])
    assert is_audio_file(path)
    assert abs(len(load_audio(path, sample_rate=SAMPLE_RATE)) - SAMPLE_RATE) < 0.06 * SAMPLE_RATE


@pytest.mark.parametrize(("native", "freq"), [(8000, 1000.0), (44100, 3000.0), (48000, 6000.0), (44100, 10000.0)])
def test_resampling_preserves_frequency(tmp_path: Path, native: int, freq: float) -> None:
    path = _write(tmp_path / "tone.wav", _tone(freq, 1.0, native, 1), native, "WAV")
    y = load_audio(path, sample_rate=SAMPLE_RATE)
    assert abs(_peak_hz(y, SAMPLE_RATE) - freq) < 2.0
    assert np.sqrt(np.mean(y**2)) == pytest.approx(0.4 / np.sqrt(2), rel=0.02)  # no gain change


def test_stereo_channels_are_averaged(tmp_path: Path) -> None:
    left = _tone(440.0, 1.0, 22050, 1)
    sf.write(tmp_path / "lr.wav", np.stack([left, -left], axis=1), 22050, subtype="FLOAT")
    assert np.abs(load_audio(tmp_path / "lr.wav", sample_rate=22050)).max() < 1e-6


@pytest.mark.parametrize(("fmt", "subtype"), [("WAV", "PCM_16"), ("AU", "PCM_16"), ("WAV", "PCM_24"), ("FLAC", "PCM_16")])
def test_integer_pcm_decodes_to_libsndfile_float_values(tmp_path: Path, fmt: str, subtype: str) -> None:
    """16-bit PCM is read as int16 and scaled in numpy (faster): the values must be libsndfile's own."""
    y = np.random.default_rng(0).uniform(-1, 1, (4000, 2)).astype(np.float32)
    path = tmp_path / f"noise.{fmt.lower()}"
    sf.write(path, y, 22050, format=fmt, subtype=subtype)
    expected = sf.read(path, dtype="float32", always_2d=True)[0].mean(axis=1)
    np.testing.assert_array_equal(load_audio(path, sample_rate=22050), expected)


def test_is_audio_file_ignores_hidden_and_other_extensions() -> None:
    assert is_audio_file(Path("a/b.Mp3")) and is_audio_file(Path("x.AU"))
    assert not is_audio_file(Path("a/._b.wav")) and not is_audio_file(Path(".hidden.ogg"))
    assert not is_audio_file(Path("notes.txt")) and not is_audio_file(Path("image.png"))


def test_missing_file_is_a_decode_error(tmp_path: Path) -> None:
    with pytest.raises(AudioDecodeError, match="no such file"):
        load_audio(tmp_path / "nope.wav", sample_rate=SAMPLE_RATE)


def test_truncated_wav_warns(tmp_path: Path) -> None:
    path = _write(tmp_path / "full.wav", _tone(440.0, 2.0, 22050, 1), 22050, "WAV")
    cut = tmp_path / "cut.wav"
    cut.write_bytes(path.read_bytes()[: 44 + 2 * 11025])  # header still promises 2 s
    with pytest.warns(AudioWarning, match="truncated"):
        y = load_audio(cut, sample_rate=SAMPLE_RATE)
    assert len(y) == 11025


@pytest.mark.parametrize("ext", sorted(FORMATS))
def test_intact_files_do_not_warn(tmp_path: Path, ext: str) -> None:
    for sample_rate, channels in ((22050, 1), (44100, 2)):
        path = _write(tmp_path / f"ok{channels}.{ext}", _tone(440.0, 2.3, sample_rate, channels), sample_rate, FORMATS[ext])
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            load_audio(path, sample_rate=SAMPLE_RATE)


@pytest.mark.shared_data
def test_shared_data_demo_clips_decode_cleanly(shared_data: Path) -> None:
    clips = sorted(p for p in (shared_data / "demo-clips").iterdir() if is_audio_file(p))
    assert {p.suffix for p in clips} == {".ogg", ".mp3"}
    for clip in clips:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            y = load_audio(clip, sample_rate=SAMPLE_RATE)
        assert len(y) > 10 * SAMPLE_RATE and np.isfinite(y).all() and 0.05 < np.abs(y).max() <= 1.5, clip.name


# --- streaming decode -------------------------------------------------------------------------
def _streamed(path: Path, sample_rate: int, block_frames: int) -> np.ndarray:
    return np.concatenate(list(stream_audio(path, sample_rate=sample_rate, block_frames=block_frames)))


@pytest.mark.parametrize("ext", sorted(FORMATS))
@pytest.mark.parametrize(("native", "channels"), [(22050, 1), (44100, 2), (48000, 1), (8000, 2), (16000, 1)])
def test_stream_audio_equals_load_audio(tmp_path: Path, ext: str, native: int, channels: int) -> None:
    """Blocks of any size concatenate to exactly load_audio's samples: soxr's streaming resampler is bit-identical."""
    path = _write(tmp_path / f"x.{ext}", _tone(440.0, 7.3, native, channels), native, FORMATS[ext])
    for target in (22050, 16000):
        whole = load_audio(path, sample_rate=target)
        for block_frames in (1000, 65536, 1 << 20):
            np.testing.assert_array_equal(_streamed(path, target, block_frames), whole)


@pytest.mark.parametrize("subtype", ["PCM_16", "PCM_24", "FLOAT"])
def test_stream_audio_equals_load_audio_for_each_subtype(tmp_path: Path, subtype: str) -> None:
    path = tmp_path / "x.wav"
    sf.write(path, _tone(330.0, 3.1, 44100, 2), 44100, subtype=subtype)
    np.testing.assert_array_equal(_streamed(path, 22050, 4096), load_audio(path, sample_rate=22050))


def test_stream_audio_errors_match_load_audio(tmp_path: Path) -> None:
    empty = tmp_path / "empty.wav"
    empty.touch()
    junk = tmp_path / "junk.mp3"
    junk.write_text("this is not audio")
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros((0, 1), dtype=np.float32), 22050)
    for path, reason in ((tmp_path / "nope.wav", "no such file"), (empty, "empty file"), (junk, "not decodable"), (silent, "no audio samples")):
        with pytest.raises(AudioDecodeError, match=reason):
            list(stream_audio(path, sample_rate=SAMPLE_RATE))


def test_stream_audio_rejects_non_finite_samples_in_a_later_block(tmp_path: Path) -> None:
    y = _tone(440.0, 2.0, 22050, 1)
    y[30_000] = np.nan
    path = tmp_path / "nan.wav"
    sf.write(path, y, 22050, subtype="FLOAT")
    with pytest.raises(AudioDecodeError, match="NaN or infinite"):
        list(stream_audio(path, sample_rate=SAMPLE_RATE, block_frames=10_000))


def test_stream_audio_warns_on_truncated_wav(tmp_path: Path) -> None:
    path = _write(tmp_path / "full.wav", _tone(440.0, 2.0, 22050, 1), 22050, "WAV")
    cut = tmp_path / "cut.wav"
    cut.write_bytes(path.read_bytes()[: 44 + 2 * 11025])  # header still promises 2 s
    with pytest.warns(AudioWarning, match="truncated"):
        y = _streamed(cut, SAMPLE_RATE, 4000)
    assert len(y) == 11025
    intact = _write(tmp_path / "ok.wav", _tone(440.0, 2.0, 44100, 2), 44100, "WAV")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _streamed(intact, SAMPLE_RATE, 4000)


# --- segmenting -------------------------------------------------------------------------------


@pytest.mark.parametrize(("seconds", "expected"), [(29.98, 10), (30.0, 10), (30.49, 10), (2.0, 1), (95.0, 31), (27.0, 9)])
def test_segment_counts_default(seconds: float, expected: int) -> None:
    config = AudioConfig()
    segments, starts = segment_audio(np.ones(int(round(seconds * SAMPLE_RATE)), dtype=np.float32), config)
    assert segments.shape == (expected, 3 * SAMPLE_RATE)
    assert segments.dtype == np.float32
    np.testing.assert_allclose(starts, np.arange(expected) * 3.0)


@pytest.mark.parametrize(("seconds", "expected"), [(30.0, 19), (29.98, 19), (95.0, 62), (2.0, 1)])
def test_segment_counts_with_overlap(seconds: float, expected: int) -> None:
    config = AudioConfig(hop_seconds=1.5)
    segments, starts = segment_audio(np.ones(int(round(seconds * SAMPLE_RATE)), dtype=np.float32), config)
    assert len(segments) == expected
    np.testing.assert_allclose(starts, np.arange(expected) * 1.5)


@pytest.mark.parametrize("hop_seconds", [1.5, 3.0, 4.0])
def test_segments_hold_the_signal_at_their_starts(hop_seconds: float) -> None:
    y = np.arange(int(20 * SAMPLE_RATE), dtype=np.float32)
    config = AudioConfig(hop_seconds=hop_seconds)
    segments, starts = segment_audio(y, config)
    assert segments.flags.c_contiguous and segments.flags.writeable and not np.shares_memory(segments, y)
    for segment, start in zip(segments, np.round(starts * SAMPLE_RATE).astype(int)):
        window = y[start : start + config.segment_samples]
        np.testing.assert_array_equal(segment[: len(window)], window)
        assert not segment[len(window) :].any()


def test_last_partial_window_is_zero_padded_and_keeps_samples() -> None:
    y = np.arange(1, int(29.98 * SAMPLE_RATE) + 1, dtype=np.float32)
    segments, _ = segment_audio(y, AudioConfig())
    np.testing.assert_array_equal(segments.reshape(-1)[: len(y)], y)
    assert not segments.reshape(-1)[len(y) :].any()


def test_short_track_is_padded_with_a_warning(tmp_path: Path) -> None:
    path = _write(tmp_path / "short.wav", _tone(440.0, 2.0, 22050, 1), 22050, "WAV")
    with pytest.warns(AudioWarning, match="zero-padded"):
        segments, starts = load_segments(path, AudioConfig())
    assert segments.shape == (1, 3 * SAMPLE_RATE) and starts.tolist() == [0.0]
    assert not segments[0, 2 * SAMPLE_RATE :].any()


def test_too_short_track_is_a_decode_error(tmp_path: Path) -> None:
    path = _write(tmp_path / "blip.wav", _tone(440.0, 0.1, 22050, 1), 22050, "WAV")
    with pytest.raises(AudioDecodeError, match="too short"):
        load_segments(path, AudioConfig())


def test_load_segments_resamples_first(tmp_path: Path) -> None:
    path = _write(tmp_path / "long.flac", _tone(440.0, 30.0, 44100, 2), 44100, "FLAC")
    segments, starts = load_segments(path, AudioConfig())
    assert segments.shape == (10, 3 * SAMPLE_RATE)
    assert starts[-1] == 27.0


def test_min_cover_is_exact() -> None:
    assert min_cover_samples(AudioConfig()) == 59535  # 0.9 * 66150, no float fuzz
    assert min_cover_samples(AudioConfig(min_last_fraction=1.0)) == 66150


def test_config_rejects_windows_below_one_sample() -> None:
    with pytest.raises(ParameterError, match="at least one sample"):
        AudioConfig(hop_seconds=1e-6)


@settings(max_examples=300, deadline=None)
@given(
    n_samples=st.integers(0, 400_000),
    segment_seconds=st.floats(0.05, 5.0),
    hop_fraction=st.floats(0.1, 2.0),
    min_last_fraction=st.sampled_from([0.1, 0.5, 0.9, 0.95, 1.0]),
)
def test_segment_rule_property(n_samples: int, segment_seconds: float, hop_fraction: float, min_last_fraction: float) -> None:
    """Every kept window starts inside the audio and covers >= min_last_fraction of a window; the next would not."""
    config = AudioConfig(
        segment_seconds=segment_seconds, hop_seconds=segment_seconds * hop_fraction, min_last_fraction=min_last_fraction
    )
    win, hop = config.segment_samples, config.hop_samples
    needed = Fraction(str(min_last_fraction)) * win
    starts = segment_starts(n_samples, config)
    if n_samples < needed:  # documented: shorter audio still gives one padded window
        assert starts.tolist() == [0]
        return
    expected = 0
    while expected * hop + needed <= n_samples:
        expected += 1
    assert len(starts) == expected
    np.testing.assert_array_equal(starts, np.arange(expected) * hop)
    assert (starts < n_samples).all()
    assert n_samples - starts[-1] >= needed
    y = np.zeros(n_samples, dtype=np.float32)
    segments, seconds = segment_audio(y, config)
    assert segments.shape == (expected, win)
    np.testing.assert_allclose(seconds, starts / config.sample_rate)


@settings(max_examples=200, deadline=None)
@given(
    n_samples=st.integers(0, 60_000),
    segment_seconds=st.floats(0.05, 1.0),
    hop_fraction=st.floats(0.1, 2.0),
    min_last_fraction=st.sampled_from([0.1, 0.5, 0.9, 1.0]),
    block=st.integers(1, 30_000),
)
def test_segmenter_cuts_blocks_like_segment_audio(
    n_samples: int, segment_seconds: float, hop_fraction: float, min_last_fraction: float, block: int
) -> None:
    """Pushed in blocks of any size, a signal gives exactly segment_audio's windows, in order."""
    config = AudioConfig(
        segment_seconds=segment_seconds, hop_seconds=segment_seconds * hop_fraction, min_last_fraction=min_last_fraction
    )
    y = np.random.default_rng(n_samples).standard_normal(n_samples).astype(np.float32)
    segmenter = Segmenter(config)
    pieces = [segmenter.push(y[lo : lo + block]) for lo in range(0, n_samples, block)]
    pieces.append(segmenter.finish())
    expected, _ = segment_audio(y, config)
    np.testing.assert_array_equal(np.concatenate(pieces), expected)
    assert segmenter.n_samples == n_samples and segmenter.n_segments == len(expected)


def test_segmenter_holds_under_a_window_plus_a_block() -> None:
    """Memory stays flat: after each push only the samples of windows not yet returned are kept."""
    config = AudioConfig()
    segmenter = Segmenter(config)
    block = np.ones(10_000, dtype=np.float32)
    for _ in range(2_000):  # ~15 minutes at 22050 Hz
        segmenter.push(block)
        assert len(segmenter._pending) < config.segment_samples + len(block)
    assert segmenter.n_segments == 2_000 * 10_000 // config.segment_samples


def _damaged_mp3(path: Path) -> Path:
    """An MP3 with zeroed stretches: libmpg123 prints "Note: Illegal Audio-MPEG-Header" to fd 2 and resyncs."""
    y = np.random.default_rng(0).standard_normal(22050 * 20).astype(np.float32) * 0.1
    sf.write(path, y, 22050, format="MP3")
    data = bytearray(path.read_bytes())
    for k in range(len(data) // 4, len(data) - 100, len(data) // 20):
        data[k : k + 60] = bytes(60)
    path.write_bytes(bytes(data))
    return path


@pytest.mark.filterwarnings("ignore::genrekit.exceptions.AudioWarning")  # the zeroed frames shorten it
@pytest.mark.parametrize("name", ["damaged.mp3", "upload", "upload.bin"])
def test_mpg123_notes_stay_out_of_stderr_whatever_the_name(tmp_path: Path, name: str, capfd: pytest.CaptureFixture[str]) -> None:
    """The web service's uploads keep the client's name, or none: MP3 data is known by its first bytes."""
    import threading

    first = _damaged_mp3(tmp_path / "damaged.mp3")
    path = first if name == first.name else first.rename(tmp_path / name)
    decoded: list[int] = []

    def decode() -> None:
        decoded.append(sum(len(block) for block in stream_audio(path, sample_rate=22050)))
        decoded.append(len(load_audio(path, sample_rate=22050)))

    threads = [threading.Thread(target=decode) for _ in range(4)]  # the service decodes in overlapping threads
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(decoded) == 8 and min(decoded) > 22050
    assert "Illegal Audio-MPEG-Header" not in capfd.readouterr().err
