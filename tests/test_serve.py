"""The HTTP API: schema, limits and their status codes, concurrency, and where uploads go."""

from __future__ import annotations

import stat
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from conftest import synth_tone
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from genrekit.checkpoint import Checkpoint, save_checkpoint
from genrekit.cli import app as cli_app
from genrekit.config import FeatureConfig
from genrekit.datasets.discover import GTZAN_GENRES
from genrekit.exceptions import ParameterError
from genrekit.classifier import GenreClassifier, Prediction, load_model
from genrekit.models import build_model
from genrekit.serve import create_app
from genrekit.serve.schemas import ErrorOut, ModelsOut, PredictionOut

SAMPLE_RATE = 22050


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cnn1 checkpoint with random weights: real shapes and labels, no training needed."""
    import torch

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "model.pt"
    net = build_model("cnn1", (128, 130), 10)
    save_checkpoint(
        Checkpoint("cnn1", {}, net.state_dict(), list(GTZAN_GENRES), FeatureConfig(), metadata={"validation": {"track_accuracy": 0.5}}),
        path,
    )
    return path


@pytest.fixture(scope="module")
def model(model_path: Path) -> GenreClassifier:
    return load_model(model_path)


class GatedModel(GenreClassifier):
    """A classifier whose predictions wait for ``release``, so tests can hold workers busy on purpose."""

    def __init__(self, model: GenreClassifier) -> None:
        super().__init__(model.runner, name="gated")
        self.started = threading.Semaphore(0)
        self.release = threading.Event()

    def predict(self, path: str | Path, **options: Any) -> Prediction:
        self.started.release()
        assert self.release.wait(30), "test never released the gated model"
        return super().predict(path, **options)


@pytest.fixture
def gated(model: GenreClassifier) -> Iterator[GatedModel]:
    gated = GatedModel(model)
    yield gated
    gated.release.set()


@pytest.fixture
def clip(tmp_path: Path, rng: np.random.Generator) -> Callable[..., Path]:
    """Write a synthesized WAV of ``seconds`` and return its path."""

    def make(seconds: float = 4.0, name: str = "tone.wav") -> Path:
        path = tmp_path / name
        sf.write(path, synth_tone(3, seconds, SAMPLE_RATE, rng), SAMPLE_RATE)
        return path

    return make


@pytest.fixture
def serve(model: GenreClassifier) -> Callable[..., AbstractContextManager[TestClient]]:
    """``with serve(**limits) as client``: a running app (its lifespan entered) on the test model."""

    @contextmanager
    def running(served: GenreClassifier | None = None, **limits: Any) -> Iterator[TestClient]:
        with TestClient(create_app(served or model, **limits)) as client:
            yield client

    return running


def post(client: TestClient, path: Path, query: str = "", name: str | None = None) -> Any:
    with open(path, "rb") as f:
        return client.post(f"/v1/predict{query}", files={"file": (name or path.name, f, "application/octet-stream")})


def upload_dir(client: TestClient) -> Path:
    directory = client.app.state.service.upload_dir  # type: ignore[attr-defined]
    assert directory is not None
    return Path(directory)


def test_predict_returns_the_predict_json_schema(serve, clip, model) -> None:
    path = clip()
    with serve() as client:
        response = post(client, path, name="my song.wav")
    assert response.status_code == 200
    body = response.json()
    expected = model.predict(path).to_dict()
    assert set(body) == set(expected)
    assert body == {**expected, "path": "my song.wav"}
    PredictionOut.model_validate(body)
    assert body["genre"] in GTZAN_GENRES and len(body["top_k"]) == 3
    assert sum(body["probabilities"].values()) == pytest.approx(1, abs=1e-4)


def test_segments_and_top_k(serve, clip) -> None:
    with serve() as client:
        body = post(client, clip(7.0), "?top_k=5&segments=true").json()
    assert len(body["top_k"]) == 5
    assert [t["probability"] for t in body["top_k"]] == sorted((t["probability"] for t in body["top_k"]), reverse=True)
    assert len(body["segments"]) == body["n_segments"] == 2
    first = body["segments"][0]
    assert (first["start_s"], first["end_s"]) == (0.0, 3.0)
    assert first["genre"] in GTZAN_GENRES and set(first["probabilities"]) == set(GTZAN_GENRES)


def test_bad_query_parameter_is_422_in_the_error_schema(serve, clip) -> None:
    with serve() as client:
        response = post(client, clip(), "?top_k=0")
    assert response.status_code == 422
    assert ErrorOut.model_validate(response.json()).error == "bad_parameter"


def test_models_and_healthz(serve) -> None:
    with serve() as client:
        models = ModelsOut.model_validate(client.get("/v1/models").json()).models
        health = client.get("/healthz").json()
    assert models[0].labels == list(GTZAN_GENRES)
    assert models[0].architecture == "cnn1" and models[0].validation == {"track_accuracy": 0.5}
    assert health["status"] == "ok" and health["in_flight"] == 0 and health["capacity"] == 17


def test_page_docs_and_openapi_are_served_locally(serve) -> None:
    with serve() as client:
        page = client.get("/")
        assert page.status_code == 200 and "/static/app.js" in page.text
        assert "default-src 'self'" in page.headers["content-security-policy"]
        for asset in ("/static/app.js", "/static/style.css"):
            assert client.get(asset).status_code == 200
        docs = client.get("/docs").text
        assert "cdn." not in docs and "https://" not in docs
        assert client.get("/static-offline-docs/swagger-ui-bundle.js").status_code == 200
        spec = client.get("/openapi.json").json()
    body = spec["paths"]["/v1/predict"]["post"]["requestBody"]["content"]["multipart/form-data"]
    assert body["schema"]["required"] == ["file"]
    assert {"413", "415", "422", "503"} <= set(spec["paths"]["/v1/predict"]["post"]["responses"])


def test_too_large_upload_is_413_and_leaves_nothing(serve, clip) -> None:
    path = clip(2.0)  # about 88 kB of 16-bit samples
    with serve(max_upload_mb=0.05) as client:
        response = post(client, path)
        assert response.status_code == 413
        assert response.json()["error"] == "too_large" and "0.05 MB" in response.json()["detail"]
        assert list(upload_dir(client).iterdir()) == []
        assert client.get("/healthz").json()["in_flight"] == 0


def test_size_limit_holds_for_a_chunked_body_without_content_length(serve) -> None:
    """No Content-Length to trust: the limit is counted on the streamed bytes."""
    boundary = "genrekit-test-boundary"
    head = f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.wav"\r\n\r\n'.encode()
    sent = []

    def body() -> Iterator[bytes]:
        yield head
        for _ in range(100):
            sent.append(1)
            yield b"\0" * 10_000
        yield f"\r\n--{boundary}--\r\n".encode()

    with serve(max_upload_mb=0.05) as client:
        response = client.post(
            "/v1/predict", content=body(), headers={"content-type": f"multipart/form-data; boundary={boundary}"}
        )
        assert response.status_code == 413
        assert list(upload_dir(client).iterdir()) == []


@pytest.mark.parametrize(
    ("name", "content"),
    [("empty.wav", b""), ("notes.mp3", b"this is a text file, not audio\n" * 20), ("noise.ogg", bytes(range(256)) * 40)],
)
def test_undecodable_file_is_415_with_a_plain_message(serve, tmp_path, name, content) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with serve() as client:
        response = post(client, path)
        assert response.status_code == 415
        error = ErrorOut.model_validate(response.json())
        assert error.error == "not_audio"
        assert f"“{name}” could not be read as audio" in error.detail
        assert "genrekit-serve" not in error.detail and str(tmp_path) not in error.detail
        assert list(upload_dir(client).iterdir()) == []


def test_too_long_audio_is_422(serve, clip) -> None:
    with serve(max_duration_s=2) as client:
        response = post(client, clip(4.0))
        assert response.status_code == 422
        assert response.json()["error"] == "too_long" and "at most 2.0 seconds" in response.json()["detail"]
        assert list(upload_dir(client).iterdir()) == []


def test_request_without_a_file(serve) -> None:
    with serve() as client:
        missing = client.post("/v1/predict", data={"note": "no file here"}, files={"other": ("x.wav", b"RIFF")})
        not_multipart = client.post("/v1/predict", content=b"RIFF....", headers={"content-type": "audio/wav"})
        malformed = client.post("/v1/predict", content=b"garbage", headers={"content-type": "multipart/form-data; boundary=xyz"})
        assert client.get("/healthz").json()["in_flight"] == 0
    assert (missing.status_code, missing.json()["error"]) == (422, "missing_file")
    assert (not_multipart.status_code, not_multipart.json()["error"]) == (415, "not_multipart")
    assert (malformed.status_code, malformed.json()["error"]) == (400, "bad_multipart")


def test_interrupted_upload_frees_its_slot_and_file(serve) -> None:
    """A client that disconnects mid-upload (driven at the ASGI level: TestClient cannot hang up)."""
    head = b'--b\r\nContent-Disposition: form-data; name="file"; filename="x.wav"\r\n\r\n' + b"\0" * 1000
    messages = iter([{"type": "http.request", "body": head, "more_body": True}, {"type": "http.disconnect"}])
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return next(messages)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
        "path": "/v1/predict", "raw_path": b"/v1/predict", "query_string": b"", "root_path": "",
        "headers": [(b"content-type", b"multipart/form-data; boundary=b")],
        "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80),
    }
    with serve() as client:
        client.portal.call(client.app, scope, receive, send)  # type: ignore[union-attr]
        assert sent[0]["status"] == 400 and b"interrupted" in sent[1]["body"]
        assert list(upload_dir(client).iterdir()) == []
        assert client.get("/healthz").json()["in_flight"] == 0


def test_healthz_answers_while_a_prediction_runs(serve, clip, gated) -> None:
    path = clip()
    with serve(gated) as client, ThreadPoolExecutor(2) as pool:
        pending = pool.submit(post, client, path)
        assert gated.started.acquire(timeout=10)
        health = pool.submit(client.get, "/healthz").result(timeout=30)  # not queued behind the blocked prediction
        assert health.status_code == 200 and health.json()["in_flight"] == 1
        assert not pending.done()
        gated.release.set()
        assert pending.result(timeout=30).status_code == 200


def test_full_queue_is_503_with_retry_after(serve, clip, gated) -> None:
    path = clip()
    with serve(gated, workers=1, max_queue=1) as client, ThreadPoolExecutor(2) as pool:
        running = [pool.submit(post, client, path) for _ in range(2)]
        assert gated.started.acquire(timeout=10)
        deadline = time.monotonic() + 10
        while client.get("/healthz").json()["in_flight"] < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        refused = post(client, path)
        assert refused.status_code == 503
        assert refused.json()["error"] == "busy"
        assert int(refused.headers["retry-after"]) >= 1
        gated.release.set()
        assert [r.result(timeout=30).status_code for r in running] == [200, 200]
        assert client.get("/healthz").json()["in_flight"] == 0
        assert list(upload_dir(client).iterdir()) == []


def test_concurrent_requests_all_succeed(serve, tmp_path, rng, model) -> None:
    paths = []
    for i in range(6):
        paths.append(tmp_path / f"clip{i}.wav")
        sf.write(paths[-1], synth_tone(i, 3.5, SAMPLE_RATE, rng), SAMPLE_RATE)
    with serve(workers=2) as client, ThreadPoolExecutor(6) as pool:
        responses = list(pool.map(lambda p: post(client, p), paths))
        assert list(upload_dir(client).iterdir()) == []
    assert [r.status_code for r in responses] == [200] * 6
    assert [r.json()["path"] for r in responses] == [p.name for p in paths]
    assert [r.json()["genre"] for r in responses] == [model.predict(p).genre for p in paths]


def test_upload_dir_is_private_and_removed_at_shutdown(serve, clip, tmp_path) -> None:
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF not really")
    with serve() as client:
        directory = upload_dir(client)
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700
        assert post(client, clip()).status_code == 200
        assert post(client, bad).status_code == 415
        assert list(directory.iterdir()) == []
    assert not directory.exists()


@pytest.mark.parametrize("limits", [{"max_upload_mb": 0}, {"max_duration_s": -1}, {"workers": 0}, {"max_queue": -1}])
def test_create_app_rejects_bad_limits(model, limits) -> None:
    with pytest.raises(ParameterError, match=next(iter(limits))):
        create_app(model, **limits)


def test_serve_command_help() -> None:
    result = CliRunner().invoke(cli_app, ["serve", "--help"])
    assert result.exit_code == 0
    assert "--max-upload-mb" in result.output and "curl -F file=@" in result.output
