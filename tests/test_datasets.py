"""Track discovery for every supported layout: GTZAN (Kaggle, original), any label folder, CSV manifests."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from genrekit.datasets.discover import GTZAN_GENRES, Track, discover, find_duplicates
from genrekit.exceptions import DatasetError, DatasetWarning

from conftest import synth_tone

GENRES = ("blues", "classical", "rock")


def _write(path: Path, seed: int, fmt: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, synth_tone(seed % 10, 0.25, 8000, np.random.default_rng(seed)), 8000, format=fmt)
    return path


def _kaggle(root: Path, per_label: int = 2) -> Path:
    """The Kaggle "GTZAN Dataset - Music Genre Classification" zip: Data/ with audio, images and CSVs."""
    data = root / "Data"
    for i, genre in enumerate(GENRES):
        for k in range(per_label):
            _write(data / "genres_original" / genre / f"{genre}.{k:05d}.wav", 10 * i + k)
            (data / "images_original" / genre).mkdir(parents=True, exist_ok=True)
            (data / "images_original" / genre / f"{genre}{k:05d}.png").write_bytes(b"\x89PNG")
    (data / "features_30_sec.csv").write_text("filename,length,label\nblues.00000.wav,661794,blues\n")
    (data / "features_3_sec.csv").write_text("filename,length,label\n")
    return data


def _ids(tracks: list[Track]) -> list[str]:
    return [t.track_id for t in tracks]


EXPECTED_GTZAN = [f"{g}.{k:05d}" for g in GENRES for k in range(2)]


@pytest.mark.parametrize("level", ["Data/genres_original", "Data", "."])
def test_kaggle_layout_from_folder_or_parents(tmp_path: Path, level: str) -> None:
    _kaggle(tmp_path)
    tracks = discover(tmp_path / level)
    assert _ids(tracks) == EXPECTED_GTZAN
    assert [t.label for t in tracks] == [g for g in GENRES for _ in range(2)]
    assert all(t.path.suffix == ".wav" and t.path.is_file() for t in tracks)
    assert all(t.content_hash and len(t.content_hash) == 32 for t in tracks)


@pytest.mark.parametrize("level", ["genres", "."])
def test_original_au_layout(tmp_path: Path, level: str) -> None:
    for i, genre in enumerate(GENRES):
        for k in range(2):
            _write(tmp_path / "genres" / genre / f"{genre}.{k:05d}.au", 10 * i + k, fmt="AU")
    tracks = discover(tmp_path / level)
    assert _ids(tracks) == EXPECTED_GTZAN
    assert all(t.path.suffix == ".au" for t in tracks)


def test_any_label_folder_with_mixed_case_extensions(tmp_path: Path) -> None:
    root = tmp_path / "my music"
    _write(root / "chill" / "Track One.WAV", 1)
    _write(root / "chill" / "b.Flac", 2, fmt="FLAC")
    _write(root / "chill" / "live" / "c.OGG", 3, fmt="OGG")  # nested folders belong to their label
    _write(root / "loud" / "d.Au", 4, fmt="AU")
    _write(root / "loud" / "e.mp3", 5, fmt="MP3")
    tracks = discover(root)
    assert _ids(tracks) == ["chill/Track One", "chill/b", "chill/live/c", "loud/d", "loud/e"]
    assert [t.label for t in tracks] == ["chill", "chill", "chill", "loud", "loud"]


def test_hidden_files_and_macos_stubs_are_ignored(tmp_path: Path) -> None:
    root = tmp_path / "genres_original"
    _write(root / "blues" / "blues.00000.wav", 1)
    (root / "blues" / "._blues.00000.wav").write_bytes(b"\x00\x05\x16\x07" + bytes(100))  # AppleDouble stub
    (root / "blues" / ".DS_Store").write_bytes(bytes(10))
    (root / "blues" / "cover.jpg").write_bytes(bytes(10))
    (root / "blues" / "notes.txt").write_text("not audio")
    _write(root / "blues" / ".hidden.wav", 2)
    _write(root / "blues" / ".cache" / "x.wav", 3)
    _write(root / ".Trash" / "y.wav", 4)
    (root / "._blues").write_bytes(bytes(10))
    _write(tmp_path / "__MACOSX" / "genres_original" / "blues" / "._blues.00001.wav", 5)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DatasetWarning)
        assert _ids(discover(tmp_path)) == ["blues.00000"]


def test_manifest_with_optional_columns(tmp_path: Path) -> None:
    a = _write(tmp_path / "audio" / "a.wav", 1)
    b = _write(tmp_path / "audio" / "blues.00007.wav", 2)
    c = _write(tmp_path / "elsewhere" / "c.flac", 3, fmt="FLAC")
    manifest = tmp_path / "lists" / "manifest.csv"
    manifest.parent.mkdir()
    manifest.write_text(
        "path,label,track_id,group\n"
        f"../audio/{a.name},jazz,,artist1\n"
        f"../audio/{b.name},blues,,\n"
        f"{c},jazz,my-id,artist1\n"
    )
    tracks = {t.track_id: t for t in discover(manifest)}
    assert sorted(tracks) == ["blues.00007", "jazz/a", "my-id"]
    assert tracks["jazz/a"].path.resolve() == a.resolve() and tracks["jazz/a"].group == "artist1"
    assert tracks["blues.00007"].group is None and tracks["blues.00007"].label == "blues"
    assert tracks["my-id"].path == c and tracks["my-id"].group == "artist1"
    assert all(t.content_hash for t in tracks.values())


def test_manifest_with_only_required_columns_and_bom(tmp_path: Path) -> None:
    _write(tmp_path / "x.wav", 1)
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,label\nx.wav,pop\n", encoding="utf-8-sig")  # as spreadsheets export it
    (track,) = discover(manifest)
    assert (track.track_id, track.label, track.group) == ("pop/x", "pop", None)


def test_manifest_without_label_column_is_an_error(tmp_path: Path) -> None:
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,style\nx.wav,pop\n")
    with pytest.raises(DatasetError, match="label"):
        discover(manifest)


def test_manifest_row_with_missing_file_has_no_hash(tmp_path: Path) -> None:
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,label\nmissing.wav,pop\n")
    (track,) = discover(manifest)
    assert track.content_hash is None  # reported by prepare as unreadable, not a crash here


def test_track_ids_are_stable_across_machines(tmp_path: Path) -> None:
    _kaggle(tmp_path / "a")
    shutil.copytree(tmp_path / "a", tmp_path / "elsewhere" / "b")
    first, second = discover(tmp_path / "a"), discover(tmp_path / "elsewhere" / "b")
    assert _ids(first) == _ids(second) == _ids(discover(tmp_path / "a"))
    assert [t.content_hash for t in first] == [t.content_hash for t in second]


def test_byte_identical_files_are_reported(tmp_path: Path) -> None:
    root = _kaggle(tmp_path) / "genres_original"
    shutil.copy(root / "rock" / "rock.00000.wav", root / "rock" / "rock.00007.wav")
    with pytest.warns(DatasetWarning, match=r"byte-identical.*rock\.00000.*rock\.00007"):
        tracks = discover(root)
    assert find_duplicates(tracks) == [["rock.00000", "rock.00007"]]
    by_id = {t.track_id: t for t in tracks}
    assert by_id["rock.00000"].content_hash == by_id["rock.00007"].content_hash


def test_no_hashes_when_asked(tmp_path: Path) -> None:
    _kaggle(tmp_path)
    assert all(t.content_hash is None for t in discover(tmp_path, hashes=False))


def test_errors_for_missing_empty_or_ambiguous_sources(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="no such"):
        discover(tmp_path / "nope")
    (tmp_path / "empty" / "blues").mkdir(parents=True)
    with pytest.raises(DatasetError, match="no audio files"):
        discover(tmp_path / "empty")
    (tmp_path / "file.wav").write_bytes(b"")
    with pytest.raises(DatasetError, match="CSV manifest"):
        discover(tmp_path / "file.wav")
    _write(tmp_path / "clash" / "blues" / "blues.00000.wav", 1)
    _write(tmp_path / "clash" / "blues" / "blues.00000.au", 2, fmt="AU")
    with pytest.raises(DatasetError, match=r"blues\.00000"):
        discover(tmp_path / "clash")



def test_unzipped_download_folder_is_followed_down(tmp_path: Path) -> None:
    _kaggle(tmp_path / "downloads" / "gtzan")
    (tmp_path / "downloads" / "gtzan" / "__MACOSX").mkdir()
    assert _ids(discover(tmp_path / "downloads")) == EXPECTED_GTZAN


@pytest.mark.shared_data
def test_shared_data_gtzan_dev_folder_and_its_manifest_agree(shared_data: Path) -> None:
    root = shared_data / "gtzan-dev"
    from_folder = discover(root)
    from_manifest = discover(root / "MANIFEST.csv")  # columns track_id,genre,path,...
    assert len(from_folder) == 348
    assert sorted(set(t.label for t in from_folder)) == list(GTZAN_GENRES)
    assert [(t.track_id, t.label, t.content_hash) for t in from_folder] == [
        (t.track_id, t.label, t.content_hash) for t in from_manifest
    ]
    assert sum(t.path.suffix == ".au" for t in from_folder) == 4


def test_discover_and_predict_walk_label_folders_alike(tmp_path: Path) -> None:
    """One walker (walk_audio): a dataset's tracks are the files predict finds in its label folders, links to folders included."""
    from genrekit.datasets.discover import find_audio_files

    root = tmp_path / "data"
    _write(root / "chill" / "a.wav", 1)
    _write(root / "chill" / "live" / "b.wav", 2)
    _write(tmp_path / "elsewhere" / "c.wav", 3)
    (root / "chill" / "linked").symlink_to(tmp_path / "elsewhere")  # followed, as predict follows it
    (root / "chill" / "up").symlink_to(root / "chill")  # a loop: searched once, reported
    _write(root / "loud" / ".hidden" / "d.wav", 4)
    _write(root / "loud" / "e.wav", 5)
    with pytest.warns(DatasetWarning, match=r"up: symbolic link loop"):
        tracks = discover(root, hashes=False)
    assert _ids(tracks) == ["chill/a", "chill/linked/c", "chill/live/b", "loud/e"]
    files, errors = find_audio_files([root / "chill", root / "loud"])
    assert sorted(files) == sorted(t.path for t in tracks)
    assert [Path(e.path).name for e in errors] == ["up"]


def test_an_unreadable_label_subfolder_is_a_warning_naming_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno
    import os

    root = tmp_path / "data"
    _write(root / "chill" / "a.wav", 1)
    _write(root / "chill" / "locked" / "b.wav", 2)
    locked = root / "chill" / "locked"
    real = os.scandir

    def scandir(path: Any = ".") -> Any:  # chmod 0 is no test under root, which reads any folder
        if Path(path) == locked:
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    with pytest.warns(DatasetWarning, match=rf"{locked}: folder not readable \(permission denied\)"):
        assert _ids(discover(root, hashes=False)) == ["chill/a"]


def test_walk_audio_lists_entries_in_walk_order_with_what_could_not_be_searched(tmp_path: Path) -> None:
    from genrekit.datasets.discover import AudioEntry, walk_audio

    _write(tmp_path / "b.wav", 1)
    _write(tmp_path / "a.mp3", 2, fmt="MP3")
    (tmp_path / "notes.txt").write_text("not audio")
    (tmp_path / "gone.ogg").symlink_to(tmp_path / "deleted.ogg")
    (tmp_path / "album.flac").mkdir()
    _write(tmp_path / "sub" / "c.au", 3, fmt="AU")
    assert walk_audio(tmp_path) == [
        AudioEntry(tmp_path / "a.mp3"),
        AudioEntry(tmp_path / "b.wav"),
        AudioEntry(tmp_path / "gone.ogg"),  # named like audio: the caller says it is a broken link
        AudioEntry(tmp_path / "album.flac", "a folder named like an audio file, holding no audio"),
        AudioEntry(tmp_path / "sub" / "c.au"),
    ]
