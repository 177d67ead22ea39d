"""The service under abuse: slow uploads, silent connections, missing tokens and cut-off bodies (a real uvicorn server)."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import httpx2 as httpx
import numpy as np
import pytest
import soundfile as sf
import uvicorn
from conftest import synth_tone, write_open_length_flac, write_random_model
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from genrekit.cli import app as cli_app
from genrekit.classifier import GenreClassifier, load_model
from genrekit.serve import create_app
from genrekit.serve._http import server_config

PART_HEAD = b'--b\r\nContent-Disposition: form-data; name="file"; filename="x.wav"\r\n\r\n'


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> GenreClassifier:
    return load_model(write_random_model(tmp_path_factory.mktemp("model") / "model.pt"))


@pytest.fixture
def clip(tmp_path: Path, rng: np.random.Generator) -> Path:
    path = tmp_path / "tone.wav"
    sf.write(path, synth_tone(2, 4.0, 22050, rng), 22050)
    return path


@pytest.fixture
def live(model: GenreClassifier) -> Callable[..., AbstractContextManager[int]]:
    """``with live(**limits) as port``: the app under uvicorn (as ``genrekit serve`` runs it) in a thread."""

    @contextmanager
    def running(header_timeout_s: float = 10.0, **limits: Any) -> Iterator[int]:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        config = server_config(create_app(model, **limits), host="127.0.0.1", port=port, log_level="error", header_timeout_s=header_timeout_s)
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 20
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.started
        try:
            yield port
        finally:
            server.should_exit = True
            thread.join(20)

    return running


def _slow_upload(port: int) -> socket.socket:
    """A client that has sent its headers and the start of a body, and then trickles."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(
        b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
        b"Content-Length: 100000\r\n\r\n" + PART_HEAD + b"\0" * 10
    )
    return sock


def _closed_within(sock: socket.socket, seconds: float) -> tuple[bool, bytes]:
    """Read until the server closes the connection (True) or ``seconds`` pass (False); returns what was read."""
    sock.settimeout(0.2)
    data = b""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        except ConnectionResetError:
            return True, data
        if not chunk:
            return True, data
        data += chunk
    return False, data


def test_slow_uploads_do_not_lock_out_normal_clients(live, clip: Path) -> None:
    # Before: the inference slot was taken before the body was read; 20 trickling clients got every slot.
    with live(workers=1, max_queue=0, max_uploads=8, upload_grace_s=1.0) as port:
        slow = [_slow_upload(port) for _ in range(4)]
        try:
            time.sleep(0.3)
            health = httpx.get(f"http://127.0.0.1:{port}/healthz").json()
            assert (health["uploading"], health["in_flight"]) == (4, 0)
            with open(clip, "rb") as f:
                response = httpx.post(f"http://127.0.0.1:{port}/v1/predict", files={"file": ("tone.wav", f)}, timeout=30)
            assert response.status_code == 200, response.text
            closed, answer = _closed_within(slow[0], 10)  # under 10 kB/s after the 1 s grace: cut off
            assert b" 408 " in answer.split(b"\r\n", 1)[0] and b"too_slow" in answer
        finally:
            for sock in slow:
                sock.close()


def test_uploads_in_progress_have_their_own_cap(live) -> None:
    with live(max_uploads=2, upload_grace_s=30.0) as port:
        slow = [_slow_upload(port) for _ in range(2)]
        try:
            time.sleep(0.3)
            third = _slow_upload(port)
            closed, answer = _closed_within(third, 2)  # the answer comes at once; the connection may stay open
            assert b" 503 " in answer.split(b"\r\n", 1)[0] and b"other uploads" in answer
            assert b"retry-after: " in answer.lower()
            third.close()
        finally:
            for sock in slow:
                sock.close()


@pytest.mark.parametrize("sent", [b"", b"GET /healthz HTTP/1.1\r\nHost: x\r\n"])
def test_silent_and_half_sent_header_connections_are_closed(live, sent: bytes) -> None:
    with live(header_timeout_s=1.0) as port, socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(sent)
        closed, _ = _closed_within(sock, 6)
        assert closed


def test_kept_alive_connection_still_works_after_a_response(live) -> None:
    with live(header_timeout_s=1.0) as port, httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
        assert client.get("/healthz").status_code == 200
        assert client.get("/healthz").status_code == 200


def test_body_without_closing_boundary_is_refused(model: GenreClassifier, clip: Path) -> None:
    body = PART_HEAD + clip.read_bytes()  # no "\r\n--b--": the upload may be cut short
    with TestClient(create_app(model)) as client:
        response = client.post("/v1/predict", content=body, headers={"content-type": "multipart/form-data; boundary=b"})
        complete = client.post("/v1/predict", content=body + b"\r\n--b--\r\n", headers={"content-type": "multipart/form-data; boundary=b"})
        assert not list(Path(client.app.state.service.upload_dir).iterdir())  # type: ignore[attr-defined]
    assert (response.status_code, response.json()["error"]) == (400, "incomplete")
    assert complete.status_code == 200


def test_token_is_required_on_the_api_when_set(model: GenreClassifier) -> None:
    with TestClient(create_app(model, token="s3cret")) as client:
        assert client.get("/v1/models").status_code == 401
        wrong = client.get("/v1/models", headers={"Authorization": "Bearer nope"})
        assert (wrong.status_code, wrong.json()["error"], wrong.headers["www-authenticate"]) == (401, "unauthorized", "Bearer")
        assert client.get("/v1/models", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert client.post("/v1/predict", files={"file": ("x.wav", b"RIFF")}).status_code == 401
        assert client.get("/healthz").status_code == 200 and client.get("/").status_code == 200


def test_serve_warns_without_token_on_a_public_host(monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[dict[str, Any]] = []
    monkeypatch.setattr("genrekit.serve.run_server", lambda app, **options: started.append(options))
    monkeypatch.delenv("GENREKIT_TOKEN", raising=False)
    runner = CliRunner()
    public = runner.invoke(cli_app, ["serve", "--host", "0.0.0.0"])
    local = runner.invoke(cli_app, ["serve"])
    with_token = runner.invoke(cli_app, ["serve", "--host", "0.0.0.0"], env={"GENREKIT_TOKEN": "s3cret"})
    assert [r.exit_code for r in (public, local, with_token)] == [0, 0, 0], public.output
    assert "without a token" in public.output
    assert "without a token" not in local.output and "without a token" not in with_token.output
    assert "token required" in with_token.output and len(started) == 3


def test_serve_rejects_an_impossible_port_without_a_traceback() -> None:
    result = CliRunner().invoke(cli_app, ["serve", "--port", "99999"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "65535" in result.output


def test_an_upload_has_a_total_time_limit_as_well_as_a_rate(live) -> None:
    # Before: only the average rate was bounded, so a client just above it held its slot for up to ~70 minutes.
    with live(upload_grace_s=30.0, max_upload_s=1.5) as port:
        sock = _slow_upload(port)
        try:
            started = time.monotonic()
            closed, answer = _closed_within(sock, 10)
            assert b" 408 " in answer.split(b"\r\n", 1)[0] and b"took longer than 1.5 s" in answer
            assert time.monotonic() - started < 5
        finally:
            sock.close()


def test_one_address_cannot_take_every_upload_slot(live, clip: Path) -> None:
    # Slow clients of one address (127.0.0.1) hold their share; another address (127.0.0.2) still gets a slot.
    with live(max_uploads=4, max_uploads_per_client=2, upload_grace_s=30.0) as port:
        slow = [_slow_upload(port) for _ in range(2)]
        try:
            time.sleep(0.3)
            third = _slow_upload(port)
            closed, answer = _closed_within(third, 2)
            assert b" 503 " in answer.split(b"\r\n", 1)[0] and b"other uploads from your address" in answer
            third.close()
            with httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.2")) as other, open(clip, "rb") as f:
                response = other.post(f"http://127.0.0.1:{port}/v1/predict", files={"file": ("tone.wav", f)}, timeout=30)
            assert response.status_code == 200, response.text
            assert httpx.get(f"http://127.0.0.1:{port}/healthz").json()["uploading"] == 2
        finally:
            for sock in slow:
                sock.close()


def test_flac_of_open_length_is_not_refused_as_too_long(model: GenreClassifier, tmp_path: Path, rng: np.random.Generator) -> None:
    path = write_open_length_flac(tmp_path / "open.flac", synth_tone(2, 4.0, 22050, rng), 22050)
    with TestClient(create_app(model)) as client, open(path, "rb") as f:
        response = client.post("/v1/predict", files={"file": ("open.flac", f)})
    assert response.status_code == 200, response.text  # before: 422 "19215358410114.1 minutes long"
    assert abs(response.json()["duration_s"] - 4.0) < 0.1
    with TestClient(create_app(model, max_duration_s=2)) as client, open(path, "rb") as f:
        response = client.post("/v1/predict", files={"file": ("open.flac", f)})
    assert response.status_code == 422 and "“open.flac” is too long; this server accepts at most 2.0 seconds" in response.json()["detail"]


def test_upload_folders_of_killed_servers_are_removed_at_start(model: GenreClassifier, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import subprocess
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    dead = subprocess.Popen(["true"])
    dead.wait()
    killed = tmp_path / f"genrekit-serve-{dead.pid}-abc_123"  # a server killed with kill -9, mid-upload
    killed.mkdir()
    (killed / "tmpx1y2.flac").write_bytes(b"half an upload")
    running = tmp_path / f"genrekit-serve-{os.getpid()}-def456"  # a server still running: left alone
    running.mkdir()
    other = tmp_path / "genrekit-serve-notapid"
    other.mkdir()
    with TestClient(create_app(model)) as client:
        assert Path(client.app.state.service.upload_dir).parent == tmp_path  # type: ignore[attr-defined]
        assert not killed.exists()  # before: left for good, one folder per kill
        assert running.is_dir() and other.is_dir()
