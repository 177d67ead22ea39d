"""genrekit tag: genre fields written with mutagen, nothing else changed, every write undoable (issue 23)."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mutagen.id3 import ID3, TCON, TIT2

from genrekit import tag_files, undo_tags
from genrekit.organize import TagError
from genrekit.organize._payload import id3v2_size

from organize_support import LABELS, audio_digest, genre_field, result, write_audio, write_results

FORMATS = [".mp3", ".ogg", ".opus", ".flac", ".m4a"]


def _set_title(path: Path, title: str, genre: str | None = None) -> None:
    """Tags another program wrote before genrekit: a title, and a genre if given."""
    import mutagen

    if path.suffix == ".mp3":
        tags = ID3()
        tags.add(TIT2(encoding=1, text=[title]))
        if genre:
            tags.add(TCON(encoding=1, text=[genre]))
        tags.save(path, v2_version=3)
        return
    audio = mutagen.File(path)
    if audio.tags is None:
        audio.add_tags()
    if path.suffix == ".m4a":
        audio.tags["©nam"] = [title]
        if genre:
            audio.tags["©gen"] = [genre]
    else:
        audio.tags["title"] = [title]
        if genre:
            audio.tags["genre"] = [genre]
    audio.save()


def _title(path: Path) -> list[str]:
    import mutagen

    if path.suffix == ".mp3":
        return list(ID3(path).getall("TIT2")[0].text)
    audio = mutagen.File(path)
    return list(audio.tags["©nam" if path.suffix == ".m4a" else "title"])


@pytest.mark.parametrize("suffix", FORMATS)
@pytest.mark.parametrize("tagged", [False, True], ids=["bare", "with-title"])
def test_write_sets_only_the_genre_and_undo_restores_it(tmp_path: Path, suffix: str, tagged: bool) -> None:
    song = write_audio(tmp_path / f"song{suffix}")
    if tagged:
        _set_title(song, "Título ☃")
    os.chmod(song, 0o640)
    original_bytes = song.read_bytes()
    decoded, payload = audio_digest(song)
    results = write_results(tmp_path / "results.parquet", [result(song, "jazz")])

    report = tag_files(results, write=True, undo_log=tmp_path / "undo.jsonl")
    assert [a.action for a in report.actions] == ["write"], report.actions
    assert genre_field(song) == ["jazz"]
    assert audio_digest(song) == (decoded, payload)
    assert stat.S_IMODE(song.stat().st_mode) == 0o640
    if tagged:
        assert _title(song) == ["Título ☃"]
    assert not list(tmp_path.glob(".*tmp"))

    undone = undo_tags(tmp_path / "undo.jsonl")
    assert [a.action for a in undone.actions] == ["write"]
    assert genre_field(song) is None
    assert audio_digest(song) == (decoded, payload)
    if tagged:
        assert _title(song) == ["Título ☃"]
    if suffix == ".mp3":  # only the ID3v2 tag was rewritten: with none before, the file is the original again
        assert song.read_bytes()[id3_end(song):] == original_bytes[id3v2_size(original_bytes):]
        if not tagged:
            assert song.read_bytes() == original_bytes


def id3_end(path: Path) -> int:
    return id3v2_size(path.read_bytes())


def test_mp3_keeps_its_id3v23_version_and_id3v1_tag_byte_for_byte(tmp_path: Path) -> None:
    song = write_audio(tmp_path / "old.mp3")
    _set_title(song, "Old Song")
    v1 = b"TAG" + b"Old Song".ljust(30, b"\0") + b"Artist".ljust(30, b"\0") + b"Album".ljust(30, b"\0") + b"1999" + b"\0" * 30 + bytes([17])
    with open(song, "ab") as f:
        f.write(v1)
    after_v2 = song.read_bytes()[id3_end(song):]
    results = write_results(tmp_path / "results.csv", [result(song, "rock")])

    tag_files(results, write=True, undo_log=tmp_path / "undo.jsonl")
    assert ID3(song, translate=False).version == (2, 3, 0)
    assert song.read_bytes()[id3_end(song):] == after_v2  # audio frames and the ID3v1 tag, untouched
    assert genre_field(song) == ["rock"]


@pytest.mark.parametrize("suffix", FORMATS)
def test_an_existing_genre_is_kept_unless_overwrite_and_undo_brings_it_back(tmp_path: Path, suffix: str) -> None:
    song = write_audio(tmp_path / f"song{suffix}")
    _set_title(song, "x", genre="Acid Jazz")
    results = write_results(tmp_path / "results.jsonl", [result(song, "jazz")])

    dry = tag_files(results)
    assert [(a.action, a.previous) for a in dry.actions] == [("keep", "Acid Jazz")]
    assert "overwrite=True" in dry.actions[0].reason and "--" not in dry.actions[0].reason  # Python's words; the CLI says --overwrite
    assert genre_field(song) == ["Acid Jazz"]

    report = tag_files(results, write=True, overwrite=True, undo_log=tmp_path / "undo.jsonl")
    assert [a.action for a in report.actions] == ["write"]
    assert genre_field(song) == ["jazz"]
    undo_tags(tmp_path / "undo.jsonl")
    assert genre_field(song) == ["Acid Jazz"]


def test_dry_run_changes_nothing_and_says_what_it_would_do(tmp_path: Path) -> None:
    songs = [write_audio(tmp_path / f"s{i}{suffix}", freq=300 + 40 * i) for i, suffix in enumerate(FORMATS)]
    before = {p: p.read_bytes() for p in songs}
    results = write_results(tmp_path / "results.parquet", [result(p, "pop") for p in songs])
    report = tag_files(results)
    assert report.dry_run and report.undo_log is None
    assert [a.action for a in report.actions] == ["write"] * len(songs)
    assert all(a.reason.startswith("would set genre 'pop'") for a in report.actions)
    assert {p: p.read_bytes() for p in songs} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*(p.name for p in songs), "results.parquet"])


def test_only_confident_results_by_default(tmp_path: Path) -> None:
    a, b, c = (write_audio(tmp_path / f"{n}.flac", freq=f) for n, f in (("a", 300), ("b", 400), ("c", 500)))
    results = write_results(tmp_path / "results.parquet", [result(a, "rock", 0.9), result(b, "pop", 0.45, uncertain=True), result(c, "jazz", 0.6)])

    def actions(**options: object) -> dict[str, str]:
        return {Path(x.path).name: x.action for x in tag_files(results, **options).actions}  # type: ignore[arg-type]

    assert actions() == {"a.flac": "write", "b.flac": "skip", "c.flac": "write"}
    assert actions(include_uncertain=True) == {"a.flac": "write", "b.flac": "write", "c.flac": "write"}
    assert actions(min_confidence=0.7) == {"a.flac": "write", "b.flac": "skip", "c.flac": "skip"}
    assert actions(min_confidence=0.4, include_uncertain=True) == {"a.flac": "write", "b.flac": "write", "c.flac": "write"}
    skipped = {Path(x.path).name: (x.skipped_because, x.reason) for x in tag_files(results, min_confidence=0.7).actions if x.action == "skip"}
    assert skipped == {"b.flac": ("uncertain", "uncertain (45% pop): include_uncertain=True to tag it"), "c.flac": ("below_min_confidence", "below min_confidence (60% < 70%)")}


def test_the_cli_names_its_options_where_the_library_names_parameters(tmp_path: Path) -> None:
    keep, unsure, low = (write_audio(tmp_path / f"{n}.flac", freq=f) for n, f in (("keep", 300), ("unsure", 400), ("low", 500)))
    _set_title(keep, "x", genre="Acid Jazz")
    results = write_results(tmp_path / "results.parquet", [result(keep, "jazz"), result(unsure, "pop", 0.45, uncertain=True), result(low, "rock", 0.6)])
    cli = subprocess.run([sys.executable, "-m", "genrekit", "tag", str(results), "--min-confidence", "0.7"], capture_output=True, text=True)
    assert cli.returncode == 0, cli.stderr
    assert f"keep  {keep}: has genre 'Acid Jazz': kept (--overwrite to replace it with 'jazz')" in cli.stdout
    assert "skipped 1 below --min-confidence, 1 uncertain" in cli.stdout
    assert "=True" not in cli.stdout and "min_confidence" not in cli.stdout


def test_a_file_changed_since_the_run_is_skipped_with_its_reason(tmp_path: Path) -> None:
    song = write_audio(tmp_path / "song.flac")
    results = write_results(tmp_path / "results.parquet", [result(song, "rock")])
    write_audio(song, freq=880)  # re-encoded after the library run: the result is not about these bytes
    before = song.read_bytes()
    report = tag_files(results, write=True, undo_log=tmp_path / "undo.jsonl")
    assert report.actions[0].action == "error"
    assert "changed since the library run" in report.actions[0].reason
    assert song.read_bytes() == before
    assert len((tmp_path / "undo.jsonl").read_text().splitlines()) == 1  # the header only


def test_read_only_vanished_and_genreless_files_are_reported_not_raised(tmp_path: Path) -> None:
    locked = write_audio(tmp_path / "locked.mp3")
    os.chmod(locked, 0o444)
    wav = write_audio(tmp_path / "plain.wav")
    rows = [result(locked, "rock"), result(wav, "rock"), result(tmp_path / "gone.ogg", "rock", content_hash="0" * 32)]
    results = write_results(tmp_path / "results.csv", rows)
    before = locked.read_bytes()
    reasons = {Path(a.path).name: (a.action, a.reason) for a in tag_files(results, write=True, undo_log=tmp_path / "undo.jsonl").actions}
    assert reasons["locked.mp3"][0] == "error" and "read-only" in reasons["locked.mp3"][1]
    assert reasons["plain.wav"][0] == "error" and "no genre field" in reasons["plain.wav"][1]
    assert reasons["gone.ogg"][0] == "error" and "vanished" in reasons["gone.ogg"][1]
    assert locked.read_bytes() == before

    cli = subprocess.run([sys.executable, "-m", "genrekit", "tag", str(results), "--write", "--undo-log", str(tmp_path / "undo2.jsonl")], capture_output=True, text=True)
    assert cli.returncode == 1, cli.stderr
    assert "Traceback" not in cli.stdout + cli.stderr
    assert "read-only" in cli.stdout and "vanished" in cli.stdout and "errors 3" in cli.stdout


def test_bad_input_is_one_line(tmp_path: Path) -> None:
    song = write_audio(tmp_path / "song.ogg")
    results = write_results(tmp_path / "results.parquet", [result(song, "rock")])
    (tmp_path / "undo.jsonl").write_text("not a log\n")
    for args, words in (
        (["tag", str(tmp_path / "missing.parquet")], "no such results file"),
        (["tag", str(results), "--min-confidence", "1.5"], "--min-confidence"),
        (["tag", "--undo", str(tmp_path / "undo.jsonl")], "line 1 is not JSON"),
        (["tag", "--undo", str(tmp_path / "nothing.jsonl")], "no such undo log"),
        (["tag", str(results), "--write", "--undo-log", str(tmp_path / "undo.jsonl")], "exists"),
    ):
        cli = subprocess.run([sys.executable, "-m", "genrekit", *args], capture_output=True, text=True)
        assert cli.returncode == 2, (args, cli.stdout, cli.stderr)
        assert words in cli.stderr and len(cli.stderr.strip().splitlines()) == 1, (args, cli.stderr)
    with pytest.raises(TagError):
        undo_tags(tmp_path / "undo.jsonl")


def test_undo_leaves_a_genre_changed_since_alone(tmp_path: Path) -> None:
    song = write_audio(tmp_path / "song.ogg")
    results = write_results(tmp_path / "results.parquet", [result(song, "rock")])
    tag_files(results, write=True, undo_log=tmp_path / "undo.jsonl")
    _set_title(song, "x", genre="Krautrock")  # the user retagged it by hand afterwards
    report = undo_tags(tmp_path / "undo.jsonl")
    assert report.actions[0].action == "error" and "Krautrock" in report.actions[0].reason
    assert genre_field(song) == ["Krautrock"]


@pytest.mark.slow
def test_kill_9_during_write_then_undo_restores_every_file(tmp_path: Path) -> None:
    """A real ``genrekit tag --write`` killed with SIGKILL mid-run: no file is half written, and --undo restores all."""
    music = tmp_path / "music"
    music.mkdir()
    songs = []
    for i in range(240):
        suffix = FORMATS[i % len(FORMATS)]
        song = write_audio(music / f"{i:03d}{suffix}", seconds=0.5, freq=200 + i)
        if i % 3 == 0:
            _set_title(song, f"song {i}", genre="Old Genre")
        songs.append(song)
    before = {p: (genre_field(p), audio_digest(p)) for p in songs}
    results = write_results(tmp_path / "results.parquet", [result(p, LABELS[i % len(LABELS)]) for i, p in enumerate(songs)])
    log = tmp_path / "undo.jsonl"

    process = subprocess.Popen([sys.executable, "-m", "genrekit", "tag", str(results), "--write", "--overwrite", "--undo-log", str(log)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (log.exists() and len(log.read_bytes().splitlines()) > 20):
        assert process.poll() is None, "genrekit tag ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    n_logged = len(log.read_text().splitlines()) - 1
    assert 20 <= n_logged < len(songs), f"killed after {n_logged} of {len(songs)} writes: not mid-run"

    for song in songs:  # each file is whole: the old one or the tagged one
        assert audio_digest(song) == before[song][1]
        assert genre_field(song) in (before[song][0], [LABELS[songs.index(song) % len(LABELS)]])

    cli = subprocess.run([sys.executable, "-m", "genrekit", "tag", "--undo", str(log)], capture_output=True, text=True)
    assert cli.returncode == 0, cli.stdout + cli.stderr
    assert {p: (genre_field(p), audio_digest(p)) for p in songs} == before
    assert not list(music.glob(".*")), "temporary copies left behind"
    assert json.loads(log.read_text().splitlines()[0])["format"] == "genrekit-tag-undo"


@pytest.mark.shared_data
def test_shared_data_real_files_are_tagged_or_reported_and_undo_restores_them(tmp_path: Path, shared_data: Path) -> None:
    """Real encoders' files (Vorbis, MP3, FLAC, AU) and the bad-audio set, as if a run had classified them all."""
    import shutil

    picks = [
        *sorted((shared_data / "bad-audio").iterdir()),
        shared_data / "demo-clips" / "los_rombos_fantasma.mp3",
        shared_data / "demo-clips" / "hedgewars_rock.ogg",
        next(iter(sorted((shared_data / "gtzan-dev-excerpts").rglob("*.flac")))),
        next(iter(sorted((shared_data / "gtzan-dev").rglob("*.au")))),
    ]
    music = tmp_path / "music"
    music.mkdir()
    copies = [Path(shutil.copyfile(p, music / p.name)) for p in picks]  # copyfile: writable copies of the read-only originals
    decodable = [p for p in copies if p.suffix in (".mp3", ".ogg", ".flac") and p.name not in ("not_audio.mp3", "random_bytes.ogg")]
    before = {p: (genre_field(p), audio_digest(p)) for p in decodable}
    results = write_results(tmp_path / "results.parquet", [result(p, "rock") for p in copies])

    report = tag_files(results, write=True, overwrite=True, undo_log=tmp_path / "undo.jsonl")
    actions = {Path(a.path).name: a for a in report.actions}
    assert {name for name, a in actions.items() if a.action == "write"} >= {p.name for p in decodable}
    assert all(a.action in ("write", "error") for a in actions.values()), actions
    for p in decodable:
        assert genre_field(p) == ["rock"]
        assert audio_digest(p) == before[p][1]
    assert "no genre field" in actions[picks[-1].name].reason
    assert actions["not_audio.mp3"].action == actions["random_bytes.ogg"].action == "error"  # no tag added to what is not audio

    undo_tags(tmp_path / "undo.jsonl")
    assert {p: (genre_field(p), audio_digest(p)) for p in decodable} == before
