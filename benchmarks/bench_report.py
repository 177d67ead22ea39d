"""Organize commands on a large library: ``genrekit report`` and ``genrekit playlists`` on 100,000 rows.

Workload: a synthetic Parquet results file of ``--rows`` files (10 genres, 20 % uncertain, 1 % failed,
paths ``/music/Artist NNN/Album NN/NNNNNN - Track title NNNNNN.flac``, as a library of 300 artists), read
and written by the same functions as the CLI. Figures are medians over ``--repeats``:

- report: seconds to read the results and write the page, the page's size, and its size gzipped (as a
  mail attachment or a web server would send it);
- browser (if /usr/bin/chromium is there): seconds from opening the file to the first page of the table,
  in headless Chromium, and the JS heap it then holds;
- playlists: seconds to write every genre's ``.m3u8``.

Prediction: the page holds ~45 bytes a row (file name, folder index, numbers), so ~5 MB for 100,000
rows, ~1 MB gzipped; writing it is Python string work, ~1-2 s; the browser parses the JSON and sorts
100,000 rows once, well under a second, and lays out 100 rows.

    .venv/bin/python benchmarks/bench_report.py [--rows 100000] [--repeats 3] [--record]
"""

from __future__ import annotations

import argparse
import gzip
import tempfile
import time
from pathlib import Path

import numpy as np

from _common import GENRES, append_row, machine, median, now

SECTION = "## Organize: report and playlists (`benchmarks/bench_report.py`)"
COLUMNS = ("date (UTC)", "machine", "rows", "runs", "report write s", "page MB", "page MB gzipped", "browser first table s", "browser JS heap MB", "playlists s")
CHROMIUM = Path("/usr/bin/chromium")


def synth_results(path: Path, rows: int) -> Path:
    """A results file as ``genrekit predict`` leaves it, without classifying anything."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from genrekit.library.formats import result_columns

    rng = np.random.default_rng(0)
    labels = list(GENRES)
    probs = rng.dirichlet(np.full(len(labels), 0.3), rows)
    top = probs.argmax(1)
    confidence = probs.max(1)
    failed = rng.random(rows) < 0.01
    uncertain = (confidence < np.quantile(confidence, 0.2)) & ~failed
    paths = [f"/music/Artist {i % 300:03d}/Album {i % 17:02d}/{i:06d} - Track title {i:06d}.flac" for i in range(rows)]
    columns: dict[str, list] = {
        "path": paths,
        "content_hash": [f"{i:032x}" for i in range(rows)],
        "genre": [None if f else labels[t] for f, t in zip(failed, top)],
        "confidence": [None if f else float(c) for f, c in zip(failed, confidence)],
        "uncertain": [None if f else bool(u) for f, u in zip(failed, uncertain)],
        **{f"p_{g}": [None if f else float(p) for f, p in zip(failed, probs[:, j])] for j, g in enumerate(labels)},
        "duration_s": [None if f else float(d) for f, d in zip(failed, rng.uniform(60, 420, rows))],
        "error": [f"{p}: could not be decoded (unexpected end of stream)" if f else None for f, p in zip(failed, paths)],
    }
    assert list(columns) == result_columns(labels)
    pq.write_table(pa.table(columns).sort_by("path"), path)
    return path


def browser_load(page_path: Path) -> tuple[float, float]:
    """(seconds to the first page of table rows, JS heap MB) in headless Chromium, from a fresh profile."""
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as profile, sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(profile, executable_path=str(CHROMIUM), args=["--headless", "--no-sandbox", "--disable-gpu"], headless=True)
        try:
            page = context.new_page()
            start = time.perf_counter()
            page.goto(page_path.as_uri())
            page.wait_for_selector("#t tbody tr")
            seconds = time.perf_counter() - start
            heap = page.evaluate("performance.memory ? performance.memory.usedJSHeapSize : 0") / 1e6
        finally:
            context.close()
    return seconds, heap


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--record", action="store_true", help="append the figures to benchmarks/RESULTS.md")
    args = parser.parse_args()

    from genrekit import report, write_playlists

    started, where = now(), machine()
    with tempfile.TemporaryDirectory() as tmp:
        results = synth_results(Path(tmp) / "results.parquet", args.rows)
        out = Path(tmp) / "report.html"
        write_s, playlist_s, load_s, heap = [], [], [], []
        for _ in range(args.repeats):
            t = time.perf_counter()
            summary = report(results, out)
            write_s.append(time.perf_counter() - t)
            t = time.perf_counter()
            write_playlists(results, Path(tmp) / "playlists")
            playlist_s.append(time.perf_counter() - t)
            if CHROMIUM.is_file():
                seconds, mb = browser_load(out)
                load_s.append(seconds)
                heap.append(mb)
        size = out.stat().st_size
        zipped = len(gzip.compress(out.read_bytes(), 6))
    print(f"{args.rows:,} rows ({summary.n_uncertain:,} uncertain, {summary.n_failed:,} failed), median of {args.repeats}:")
    print(f"  report write s {median(write_s):.2f} (runs: {', '.join(f'{s:.2f}' for s in write_s)})")
    print(f"  page MB {size / 1e6:.2f}, gzipped {zipped / 1e6:.2f} ({size / args.rows:.0f} bytes a row)")
    browser = (f"{median(load_s):.2f}", f"{median(heap):.0f}") if load_s else ("no chromium", "")
    print(f"  browser first table s {browser[0]}, JS heap MB {browser[1]}")
    print(f"  playlists s {median(playlist_s):.2f}")
    if args.record:
        append_row(SECTION, COLUMNS, (started, where, f"{args.rows:,}", args.repeats, f"{median(write_s):.2f}", f"{size / 1e6:.2f}", f"{zipped / 1e6:.2f}", *browser, f"{median(playlist_s):.2f}"))


if __name__ == "__main__":
    main()
