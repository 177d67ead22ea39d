"""End to end: ``genrekit serve`` in a subprocess, the page driven in headless Chromium by Playwright.

Needs Debian's ``chromium`` at /usr/bin/chromium and the ``playwright`` package; ``make test``
installs both. A missing browser is a failure, not a skip, so CI can never pass without running this.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from genrekit.datasets.discover import GTZAN_GENRES

from conftest import synth_tone, write_random_model

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).parent / "artifacts"
DROP_FILE = """([name, bytes]) => {
  const data = new DataTransfer();
  data.items.add(new File([new Uint8Array(bytes)], name));
  window.dispatchEvent(new DragEvent("drop", { dataTransfer: data, bubbles: true, cancelable: true }));
}"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL of ``genrekit serve`` on a free loopback port, with a random-weights cnn1 model."""
    yield from _serve(str(write_random_model(tmp_path_factory.mktemp("model") / "model.pt")), tmp_path_factory)


@pytest.fixture(scope="module")
def musicnn_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL of ``genrekit serve`` with the shipped default model: one whose predictions carry tags."""
    yield from _serve("default", tmp_path_factory)


def _serve(model: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = _free_port()
    log = tmp_path_factory.mktemp("server") / "server.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "genrekit", "serve", "--model", model, "--port", str(port), "--log-level", "warning"],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, f"genrekit serve exited early:\n{log.read_text()}"
            try:
                with urllib.request.urlopen(f"{base}/healthz", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                assert time.monotonic() < deadline, f"genrekit serve did not answer within 60 s:\n{log.read_text()}"
                time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def page(tmp_path: Path) -> Iterator[object]:
    """A page in a fresh headless Chromium profile; every request it makes is recorded on ``page.urls``."""
    from playwright.sync_api import sync_playwright

    assert CHROMIUM.is_file(), f"{CHROMIUM} is missing: install Debian's chromium (make test does)"
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "profile"),
            executable_path=str(CHROMIUM),
            args=CHROMIUM_ARGS,
            headless=True,
            viewport={"width": 900, "height": 1100},
        )
        try:
            page = context.new_page()
            page.urls = []  # type: ignore[attr-defined]
            page.on("request", lambda request: page.urls.append(request.url))  # type: ignore[attr-defined]
            yield page
        finally:
            context.close()


@pytest.mark.shared_data
def test_shared_data_page_classifies_a_chosen_clip_and_explains_a_dropped_bad_file(server: str, page, shared_data: Path) -> None:
    page.goto(f"{server}/")
    page.wait_for_selector("#model-info:not([hidden])")

    page.set_input_files("#file", str(shared_data / "demo-clips" / "hedgewars_rock.ogg"))
    page.wait_for_selector("#result:not([hidden])", timeout=60_000)
    top = page.inner_text("#top-genre").strip().lower()
    assert top in GTZAN_GENRES
    assert page.locator("#bars li").count() == 5
    assert page.locator(f'#bars li[data-genre="{top}"] .bar-value').inner_text().endswith("%")
    assert page.locator("#timeline svg rect").count() >= 10
    assert "hedgewars_rock.ogg" in page.inner_text("#result-meta")
    ARTIFACTS.mkdir(exist_ok=True)
    screenshot = ARTIFACTS / "serve_page_result.png"
    page.screenshot(path=str(screenshot), full_page=True)
    print(f"screenshot: {screenshot}")

    bad = shared_data / "bad-audio" / "not_audio.mp3"
    page.evaluate(DROP_FILE, [bad.name, list(bad.read_bytes())])
    page.wait_for_selector("#error:not([hidden])", timeout=30_000)
    message = page.inner_text("#error-text")
    assert "“not_audio.mp3” could not be read as audio" in message
    assert page.locator("#result").is_hidden()
    page.screenshot(path=str(ARTIFACTS / "serve_page_error.png"), full_page=True)

    assert all(url.startswith((server, "data:")) for url in page.urls), page.urls


def test_api_docs_render_without_internet(server: str, page) -> None:
    page.goto(f"{server}/docs")
    page.wait_for_selector(".swagger-ui .info .title", timeout=30_000)
    assert "genrekit" in page.inner_text(".swagger-ui .info .title")
    assert page.get_by_text("/v1/predict", exact=True).count() >= 1
    assert all(url.startswith((server, "data:")) for url in page.urls), page.urls


def test_demo_page_fits_the_window_at_desktop_and_phone_widths(page, tmp_path: Path) -> None:
    """demo's index.html (genrekit demo, predict --plot): no horizontal scroll at 1,280 or 390 px (it was 1,399 px wide at 1,280)."""
    from genrekit.classifier import Prediction, SegmentPrediction
    from genrekit.plots.page import write_html_summary
    from genrekit.plots.predictions import plot_timeline

    labels = ["blues", "classical", "rock"]
    plots = {}
    results = []
    for i, name in enumerate(["a_track_with_a_rather_long_file_name_that_must_wrap_somewhere.ogg", "b.ogg"]):
        probs = dict(zip(labels, np.roll([0.7, 0.2, 0.1], i).tolist()))
        segments = tuple(SegmentPrediction(3.0 * k, 3.0 * k + 3, max(probs, key=probs.__getitem__), probs) for k in range(10))
        prediction = Prediction(name, max(probs, key=probs.__getitem__), probs, segments, 30.0)
        results.append(prediction)
        plots[name] = plot_timeline(prediction, tmp_path / f"{i}.png").name
    index = write_html_summary(results, tmp_path / "index.html", model_name="default", plots=plots)
    for width in (1280, 390):
        page.set_viewport_size({"width": width, "height": 900})
        page.goto(index.as_uri())
        page.wait_for_load_state("load")
        assert page.evaluate("document.documentElement.scrollWidth") <= page.evaluate("window.innerWidth"), width
        assert page.evaluate("Math.max(...[...document.images].map(i => i.getBoundingClientRect().right))") <= width
        page.screenshot(path=str(ARTIFACTS / f"demo_{width}.png"))


def test_page_shows_the_tags_the_service_returns_as_chips(musicnn_server: str, page, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    clip = tmp_path / "tones.wav"
    sf.write(clip, np.concatenate([synth_tone(i, 3.0, 22050, rng) for i in (2, 6)]), 22050)
    page.goto(f"{musicnn_server}/")
    page.wait_for_selector("#model-info:not([hidden])")
    with page.expect_response(lambda response: "/v1/predict" in response.url) as answer:
        page.set_input_files("#file", str(clip))
    body = answer.value.json()
    page.wait_for_selector("#result:not([hidden])", timeout=60_000)
    assert len(body["tags"]) == 5
    chips = page.locator("#tags li")
    assert chips.count() == 5
    for i, tag in enumerate(body["tags"]):  # the service's numbers, to the 2 decimals of `predict --tags`
        assert chips.nth(i).inner_text().split() == [*tag["tag"].split(), f"{tag['score']:.2f}"]
    hint = page.locator("#tags-hint")
    assert hint.is_visible() == body["uncertain"]
    if body["uncertain"]:
        assert hint.inner_text().startswith("not clearly one of the ten genres; sounds like: ")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "serve_page_tags.png"), full_page=True)
    assert all(url.startswith((musicnn_server, "data:")) for url in page.urls), page.urls


def test_page_shows_no_chips_for_a_model_without_tags(server: str, page, tmp_path: Path) -> None:
    clip = tmp_path / "tones.wav"
    sf.write(clip, synth_tone(1, 3.0, 22050, np.random.default_rng(0)), 22050)
    page.goto(f"{server}/")
    page.wait_for_selector("#model-info:not([hidden])")
    page.set_input_files("#file", str(clip))
    page.wait_for_selector("#result:not([hidden])", timeout=60_000)
    assert page.locator("#tags li").count() == 0 and page.locator("#tags").is_hidden() and page.locator("#tags-hint").is_hidden()


def test_model_info_speaks_plainly(musicnn_server: str, page) -> None:
    """The page says what the shipped model does in words a listener uses; file paths and recipe names stay in the tooltip."""
    page.goto(f"{musicnn_server}/")
    page.wait_for_selector("#model-info:not([hidden])")
    text = page.locator("#model-info").inner_text()
    assert "tells 10 genres apart" in text and "It named the right genre for " in text and "tracks it was not trained on" in text, text
    assert "tags-lr" in page.locator("#model-info").get_attribute("title")
    for jargon in (".md", "tags-lr", "MSD", "MTT", "cross-validation", "macro"):
        assert jargon not in text, text
