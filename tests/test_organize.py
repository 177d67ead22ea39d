"""The organize commands' reader, playlists and report (issue 23); tagging is in test_organize_tag.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from genrekit import report, write_playlists
from genrekit.exceptions import ParameterError
from genrekit.organize import ResultsFileError, load_results

from organize_support import result, write_results


def _rows(root: Path) -> list[dict]:
    return [
        result(root / "Jazz" / "b.flac", "jazz", 0.8, content_hash="1" * 32, duration=185.4),
        result(root / "Jazz" / "a ünï.mp3", "jazz", 0.95, content_hash="2" * 32, duration=61.0),
        result(root / "Rock" / "x.ogg", "rock", 0.41, uncertain=True, content_hash="3" * 32),
        result(root / "Rock" / "bad.mp3", None, error="not decodable audio", content_hash="4" * 32),
        result(root / "loose.m4a", "pop", 0.7, content_hash="5" * 32),
    ]


@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".jsonl"])
def test_the_reader_gives_the_same_rows_for_every_format(tmp_path: Path, suffix: str) -> None:
    r = load_results(write_results(tmp_path / f"results{suffix}", _rows(tmp_path / "music")))
    assert r.labels[:2] == ["blues", "classical"] and len(r.labels) == 10
    assert [Path(p).name for p in r.paths] == ["a ünï.mp3", "b.flac", "bad.mp3", "x.ogg", "loose.m4a"]
    assert [r.status(i) for i in range(len(r))] == ["confident", "confident", "failed", "uncertain", "confident"]
    assert r.confidences[0] == 0.95 and r.durations[0] == 61.0 and r.errors[2] == "not decodable audio"
    assert r.error_kinds == [None, None, "decode", None, None]


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_a_torn_last_row_is_dropped_in_memory_and_the_file_left_as_it_is(tmp_path: Path, suffix: str) -> None:
    path = write_results(tmp_path / f"results{suffix}", _rows(tmp_path))
    with open(path, "a", encoding="utf-8") as f:
        f.write('"/half/a/row' if suffix == ".csv" else '{"path": "/half')
    before = path.read_bytes()
    assert len(load_results(path)) == 5
    assert path.read_bytes() == before


def test_the_reader_refuses_what_is_not_a_results_file(tmp_path: Path) -> None:
    (tmp_path / "other.csv").write_text("a,b\n1,2\n")
    (tmp_path / "broken.parquet").write_bytes(b"PAR1 no footer")
    for path, words in (
        (tmp_path / "missing.parquet", "no such results file"),
        (tmp_path / "other.csv", "not a genrekit results file"),
        (tmp_path / "broken.parquet", "not a readable results file"),
        (tmp_path / "results.txt", "ends in"),
    ):
        with pytest.raises(ResultsFileError, match=words):
            load_results(path)


def test_playlists_per_genre_relative_and_deterministic(tmp_path: Path) -> None:
    music = tmp_path / "music"
    results = write_results(tmp_path / "results.parquet", _rows(music))
    out = tmp_path / "lists"
    summary = write_playlists(results, out)
    assert sorted(p.name for p in summary.playlists) == ["jazz.m3u8", "pop.m3u8", "uncertain.m3u8"]
    assert summary.n_failed == 1
    jazz = (out / "jazz.m3u8").read_text(encoding="utf-8").splitlines()
    assert jazz[0] == "#EXTM3U"
    assert jazz[3:] == ["#EXTINF:61,a ünï", "../music/Jazz/a ünï.mp3", "#EXTINF:185,b", "../music/Jazz/b.flac"]
    assert (out / "uncertain.m3u8").read_text(encoding="utf-8").splitlines()[-1] == "../music/Rock/x.ogg"
    assert not (out / "rock.m3u8").exists()
    first = {p: p.read_bytes() for p in out.iterdir()}
    write_playlists(results, out)
    assert {p: p.read_bytes() for p in out.iterdir()} == first  # same results, same bytes, nothing else left


def test_include_uncertain_moves_them_and_removes_the_stale_playlist_only(tmp_path: Path) -> None:
    results = write_results(tmp_path / "results.csv", _rows(tmp_path / "music"))
    out = tmp_path / "lists"
    write_playlists(results, out)
    (out / "mine.m3u8").write_text("#EXTM3U\n/my/own/song.mp3\n")
    summary = write_playlists(results, out, include_uncertain=True, absolute=True)
    assert [p.name for p in summary.removed] == ["uncertain.m3u8"]
    assert (out / "mine.m3u8").read_text() == "#EXTM3U\n/my/own/song.mp3\n"
    assert (out / "rock.m3u8").read_text(encoding="utf-8").splitlines()[-1] == str(tmp_path / "music" / "Rock" / "x.ogg")


def test_playlists_never_overwrite_a_file_genrekit_did_not_write(tmp_path: Path) -> None:
    results = write_results(tmp_path / "results.parquet", _rows(tmp_path / "music"))
    out = tmp_path / "lists"
    out.mkdir()
    (out / "jazz.m3u8").write_text("#EXTM3U\nmy jazz\n")
    with pytest.raises(ParameterError, match="not a genrekit playlist"):
        write_playlists(results, out)
    assert (out / "jazz.m3u8").read_text() == "#EXTM3U\nmy jazz\n"
    assert sorted(p.name for p in out.iterdir()) == ["jazz.m3u8"]


def test_report_is_one_offline_page_with_every_section(tmp_path: Path) -> None:
    results = write_results(tmp_path / "results.jsonl", _rows(tmp_path / "music"))
    summary = report(results, tmp_path / "report.html", title="My <music>")
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert (summary.n_files, summary.n_confident, summary.n_uncertain, summary.n_failed) == (5, 3, 1, 1)
    assert summary.genre_counts == {"jazz": 2, "rock": 1, "pop": 1}
    for section in ('id="distribution"', 'id="histogram"', 'id="folders"', 'id="problems"', 'id="files"'):
        assert section in page
    assert "My &lt;music&gt;" in page and "<music>" not in page
    assert "not decodable audio" in page and "rock 41% vs blues 8%" in page
    assert "Failed: 1 <span class=\"muted\">(1 not audio or damaged)</span>" in page
    assert "http://" not in page and "https://" not in page and "src=" not in page  # nothing to fetch
    from genrekit.plots.palette import GENRE_COLORS

    assert GENRE_COLORS["jazz"] in page


def test_report_counts_the_failed_files_of_each_kind(tmp_path: Path) -> None:
    root = tmp_path / "music"
    rows = [
        result(root / "a.mp3", None, error="not decodable audio (unknown format)", content_hash="1" * 32),
        result(root / "b.mp3", None, error="not decodable audio (empty file)", content_hash="2" * 32),
        result(root / "c.ogg", None, error="no such file or folder", error_kind="missing"),
        result(root / "d.flac", None, error="cannot be read (permission denied)", error_kind="unreadable", content_hash="4" * 32),
        result(root / "e.wav", "rock", 0.9, content_hash="5" * 32),
    ]
    report(write_results(tmp_path / "results.parquet", rows), tmp_path / "report.html")
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "Failed: 4 <span class=\"muted\">(2 not audio or damaged, 1 missing, 1 unreadable)</span>" in page
    assert "Uncertain: 0</h3>" in page  # only failures have kinds


def test_report_refuses_to_overwrite_a_page_it_did_not_write(tmp_path: Path) -> None:
    results = write_results(tmp_path / "results.parquet", _rows(tmp_path / "music"))
    (tmp_path / "index.html").write_text("<p>mine</p>")
    cli = subprocess.run([sys.executable, "-m", "genrekit", "report", str(results), "--out", str(tmp_path / "index.html")], capture_output=True, text=True)
    assert cli.returncode == 2 and "not a genrekit report" in cli.stderr and len(cli.stderr.strip().splitlines()) == 1
    assert (tmp_path / "index.html").read_text() == "<p>mine</p>"
    cli = subprocess.run([sys.executable, "-m", "genrekit", "report", str(results), "--out", str(tmp_path / "r.html")], capture_output=True, text=True)
    assert cli.returncode == 0, cli.stderr
    assert "5 files" in cli.stdout and (tmp_path / "r.html").is_file()
    cli = subprocess.run([sys.executable, "-m", "genrekit", "report", str(results), "--out", str(tmp_path / "r.html")], capture_output=True, text=True)
    assert cli.returncode == 0, cli.stderr  # its own page is replaced
