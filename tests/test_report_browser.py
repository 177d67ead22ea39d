"""``genrekit report``'s page in headless Chromium (Playwright), opened from disk: desktop and phone widths.

Needs Debian's ``chromium`` like test_e2e_browser.py; a missing browser is a failure, not a skip.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import expect

from genrekit import report

from organize_support import LABELS, result, write_results
from test_e2e_browser import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS

N_ROWS = 2_000


def _confidence(i: int) -> float:
    return 0.3 + 0.7 * ((i * 37) % 100) / 100


@pytest.fixture(scope="module")
def report_page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A report of 2,000 files: long nested paths, every genre, uncertain and failed ones."""
    root = tmp_path_factory.mktemp("lib") / "Music"
    rows = []
    for i in range(N_ROWS):
        genre = LABELS[i % len(LABELS)]
        path = root / f"Artist {i % 37} with a rather long name" / f"Album {i % 11} (Deluxe Remastered Edition)" / f"{i:05d} - a_very_long_track_title_without_spaces_{i}.flac"
        if i % 97 == 0:
            rows.append(result(path, None, error=f"{path}: could not be decoded (unexpected end of stream)", content_hash=f"{i:032d}"))
        else:
            confidence = _confidence(i)
            rows.append(result(path, genre, confidence, uncertain=confidence < 0.5, content_hash=f"{i:032d}", duration=30 + i % 300))
    results = write_results(tmp_path_factory.mktemp("results") / "results.parquet", rows)
    out = results.with_name("report.html")
    report(results, out)
    return out


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    assert CHROMIUM.is_file(), f"{CHROMIUM} is missing: install Debian's chromium (make test does)"
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(str(tmp_path / "profile"), executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            yield context
        finally:
            context.close()


@pytest.mark.parametrize("width", [1280, 390], ids=["desktop", "phone"])
def test_report_page_fits_the_screen_and_its_table_sorts_and_filters(report_page: Path, browser, width: int) -> None:
    page = browser.new_page()
    page.set_viewport_size({"width": width, "height": 900})
    urls: list[str] = []
    page.on("request", lambda request: urls.append(request.url))
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(report_page.as_uri())
    page.wait_for_selector("#t tbody tr")

    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert page.locator("#distribution li").count() == len(LABELS)
    assert page.locator("#histogram svg rect").count() == 40
    assert page.locator("#t tbody tr").count() == 100
    assert page.inner_text("#count") == f"{N_ROWS:,} files"
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"report_{width}.png"), full_page=True)

    page.select_option("#fs", "failed")
    n_failed = len(range(0, N_ROWS, 97))
    assert page.inner_text("#count") == f"{n_failed} of {N_ROWS:,} files"
    assert "could not be decoded" in page.inner_text("#t tbody")

    page.select_option("#fs", "")
    page.click('#t th[data-k="conf"]')  # highest confidence first
    first = page.locator("#t tbody tr").first.locator("td").nth(2).inner_text()
    assert first == f"{100 * max(_confidence(i) for i in range(N_ROWS) if i % 97):.1f}%", first
    page.click('#t th[data-k="conf"]')
    assert page.locator("#t tbody tr").first.locator("td").nth(2).inner_text() == "30.0%"

    page.click('#distribution button[data-filter-genre="metal"]')
    assert page.input_value("#fg") == "metal"
    assert {t.strip() for t in page.locator("#t tbody tr td:nth-child(2)").all_inner_texts()} == {"metal"}
    page.fill("#q", "00016 - ")
    expect(page.locator("#count")).to_have_text(f"1 of {N_ROWS:,} files")  # the search waits for typing to pause
    assert page.is_disabled("#next") and page.is_disabled("#prev")
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")

    assert errors == []
    assert all(url.startswith(("file:", "data:")) for url in urls), urls
