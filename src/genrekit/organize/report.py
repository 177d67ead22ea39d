"""``genrekit report``: a library run's results as one HTML page that opens from disk.

Everything is inline (CSS, SVG, a small script, the rows as JSON), so the page works offline, can be
mailed, and loads nothing. Charts are drawn here, as HTML and SVG, so they show without the script;
the script only runs the table of all files (sort, filter, pages of 100 rows), which is what keeps
100,000 files fast: the browser lays out one page of rows, never the whole library. Rows are stored
columnwise with folders and error messages listed once, to keep the page light.
"""

from __future__ import annotations

import html
import json
import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..plots.palette import genre_colors
from .._io import atomic_write
from ._results import Results, load_results, relative, top_folder

__all__ = ["ReportSummary", "report"]

HISTOGRAM_BINS = 20
MAX_FOLDERS = 30  # rows of the genre-by-folder chart; the rest are summed into one row
MAX_LISTED = 200  # uncertain and failed files listed in full; the table shows all of them
ProgressCallback = Callable[[int, int, str], None]


@dataclass(frozen=True)
class ReportSummary:
    """What :func:`report` wrote."""

    out: Path
    n_files: int
    n_confident: int
    n_uncertain: int
    n_failed: int
    genre_counts: dict[str, int]
    n_bytes: int
    seconds: float


def report(results: str | os.PathLike[str] | Results, out: str | os.PathLike[str], *, title: str | None = None, on_progress: ProgressCallback | None = None) -> ReportSummary:
    """Write the HTML report of a library run.

    Parameters
    ----------
    results : path or Results
        A ``genrekit predict`` results file (``.parquet``, ``.csv``, ``.jsonl``) or its :func:`load_results`.
    out : path
        The ``.html`` file to write (atomically: an existing report is replaced whole).
    title : str, optional
        The page's heading; by default the results file's name.
    on_progress : callable(done, total, step), optional

    Returns
    -------
    ReportSummary

    Raises
    ------
    ResultsFileError
        The results file cannot be read.
    ParameterError
        ``out`` is not an ``.html`` file or is an existing file genrekit did not write.
    """
    start = time.perf_counter()
    steps = 3

    def progress(done: int, step: str) -> None:
        if on_progress is not None:
            on_progress(done, steps, step)

    out = Path(out)
    _check_out(out)
    progress(0, "reading results")
    table = results if isinstance(results, Results) else load_results(results)
    progress(1, "drawing charts")
    page = _page(table, title or table.source.name)
    progress(2, "writing page")
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(out, "w", encoding="utf-8", newline="\n") as f:
        f.write(page)
    progress(3, "done")
    statuses = Counter(table.status(i) for i in range(len(table)))
    return ReportSummary(
        out=out,
        n_files=len(table),
        n_confident=statuses["confident"],
        n_uncertain=statuses["uncertain"],
        n_failed=statuses["failed"],
        genre_counts=dict(Counter(g for g in table.genres if g is not None)),
        n_bytes=len(page.encode("utf-8")),
        seconds=time.perf_counter() - start,
    )


_MARK = '<meta name="generator" content="genrekit report">'


def _check_out(out: Path) -> None:
    from ..exceptions import Mention, ParameterError

    if out.suffix.lower() not in (".html", ".htm"):
        raise ParameterError(Mention("out", str(out)), ": the report is an HTML file; give a name ending in .html")
    if out.is_dir():
        raise ParameterError(Mention("out", str(out)), ": is a folder; give a file name ending in .html")
    if out.exists():
        with open(out, encoding="utf-8", errors="replace") as f:
            head = f.read(4096)
        if _MARK not in head:
            raise ParameterError(Mention("out", str(out)), ": exists and is not a genrekit report; choose another name (genrekit never overwrites a file it did not write)")


def _common_root(paths: list[str]) -> str:
    folders = {os.path.dirname(p) for p in paths}
    if not folders:
        return ""
    try:
        return os.path.commonpath(list(folders))
    except ValueError:  # relative and absolute paths mixed, or several drives
        return ""


def _esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def _pct(n: int, total: int) -> str:
    return f"{100 * n / total:.1f}%" if total else "0%"


def _page(r: Results, title: str) -> str:
    n = len(r)
    labels = list(r.labels) + sorted({g for g in r.genres if g is not None and g not in r.labels})
    colors = genre_colors(labels)
    root = _common_root(r.paths)
    statuses = [r.status(i) for i in range(n)]
    counts = Counter(statuses)
    sections = [
        _summary(r, counts, root),
        _distribution(r, statuses, labels, colors),
        _histogram(r, statuses),
        _folders(r, root, labels, colors),
        _problem_lists(r, statuses, root),
        _table_section(),
    ]
    data = _table_data(r, statuses, labels, colors, root)
    return (
        _TEMPLATE.replace("{{title}}", _esc(title))
        .replace("{{mark}}", _MARK)
        .replace("{{style}}", _STYLE)
        .replace("{{body}}", "\n".join(sections))
        .replace("{{data}}", data)
        .replace("{{script}}", _SCRIPT)
    )


def _summary(r: Results, counts: Counter[str], root: str) -> str:
    n = len(r)
    hours = sum(d for d in r.durations if d) / 3600
    cards = [
        ("files", f"{n:,}", ""),
        ("confident", f"{counts['confident']:,}", _pct(counts["confident"], n)),
        ("uncertain", f"{counts['uncertain']:,}", _pct(counts["uncertain"], n)),
        ("failed", f"{counts['failed']:,}", _pct(counts["failed"], n)),
        ("audio", f"{hours:,.1f} h", ""),
    ]
    items = "".join(f'<li class="card card-{k}"><span class="k">{k}</span><span class="v">{v}</span><span class="p">{p}</span></li>' for k, v, p in cards)
    where = f'<p class="muted">Files under <code>{_esc(root)}</code>; results from <code>{_esc(r.source)}</code>.</p>' if root else ""
    return f'<section id="summary"><ul class="cards">{items}</ul>{where}</section>'


def _distribution(r: Results, statuses: list[str], labels: list[str], colors: dict[str, str]) -> str:
    confident: Counter[str] = Counter()
    uncertain: Counter[str] = Counter()
    for genre, status in zip(r.genres, statuses):
        if status == "confident":
            confident[genre or ""] += 1
        elif status == "uncertain":
            uncertain[genre or ""] += 1
    top = max((confident[g] + uncertain[g] for g in labels), default=0) or 1
    rows = []
    for g in sorted(labels, key=lambda g: (-(confident[g] + uncertain[g]), g)):
        c, u = confident[g], uncertain[g]
        rows.append(
            f'<li data-genre="{_esc(g)}"><button type="button" class="g" data-filter-genre="{_esc(g)}" title="Show {_esc(g)} in the table">'
            f'<i class="dot" style="background:{colors[g]}"></i>{_esc(g)}</button>'
            f'<span class="track"><span class="seg" style="width:{100 * c / top:.2f}%;background:{colors[g]}" title="{c:,} confident"></span>'
            f'<span class="seg unc" style="width:{100 * u / top:.2f}%;background:{colors[g]}" title="{u:,} uncertain"></span></span>'
            f'<span class="num">{c + u:,}<small>{c:,} + {u:,}</small></span></li>'
        )
    return (
        '<section id="distribution"><h2>Genres</h2><p class="muted">Files per genre: <span class="key solid"></span> confident '
        '<span class="key light"></span> uncertain (the model hesitated; check these by ear). Click a genre to list its files.</p>'
        f'<ol class="bars">{"".join(rows)}</ol></section>'
    )


def _histogram(r: Results, statuses: list[str]) -> str:
    confident = [0] * HISTOGRAM_BINS
    uncertain = [0] * HISTOGRAM_BINS
    for confidence, status in zip(r.confidences, statuses):
        if confidence is None or status == "failed":
            continue
        b = min(HISTOGRAM_BINS - 1, max(0, int(confidence * HISTOGRAM_BINS)))
        (uncertain if status == "uncertain" else confident)[b] += 1
    top = max((c + u for c, u in zip(confident, uncertain)), default=0) or 1
    width, height = 10, 100  # per bin, in the SVG's own units; the SVG is stretched to the page width
    bars = []
    for b, (c, u) in enumerate(zip(confident, uncertain)):
        lo, hi = b / HISTOGRAM_BINS, (b + 1) / HISTOGRAM_BINS
        hc, hu = height * c / top, height * u / top
        tip = f"confidence {lo:.0%}–{hi:.0%}: {c + u:,} files ({c:,} confident, {u:,} uncertain)"
        bars.append(
            f'<g><title>{tip}</title><rect x="{b * width + 1}" y="{height - hc:.2f}" width="{width - 2}" height="{hc:.2f}" class="h-conf"/>'
            f'<rect x="{b * width + 1}" y="{height - hc - hu:.2f}" width="{width - 2}" height="{hu:.2f}" class="h-unc"/></g>'
        )
    ticks = "".join(f"<span>{t}%</span>" for t in (0, 25, 50, 75, 100))
    return (
        '<section id="histogram"><h2>Confidence</h2><p class="muted">How sure the model was of each file\'s top genre '
        f'(the highest bar holds {top:,} files).</p>'
        f'<svg viewBox="0 0 {HISTOGRAM_BINS * width} {height}" preserveAspectRatio="none" role="img" aria-label="confidence histogram">{"".join(bars)}</svg>'
        f'<div class="ticks">{ticks}</div></section>'
    )


def _folders(r: Results, root: str, labels: list[str], colors: dict[str, str]) -> str:
    by_folder: dict[str, Counter[str]] = {}
    for path, genre in zip(r.paths, r.genres):
        if genre is not None:
            by_folder.setdefault(top_folder(path, root), Counter())[genre] += 1
    ordered = sorted(by_folder, key=lambda f: (-sum(by_folder[f].values()), f))
    shown, rest = ordered[:MAX_FOLDERS], ordered[MAX_FOLDERS:]
    rows = [(f, by_folder[f]) for f in shown]
    if rest:
        other: Counter[str] = Counter()
        for f in rest:
            other.update(by_folder[f])
        rows.append((f"{len(rest):,} other folders", other))
    lines = []
    for folder, counter in rows:
        total = sum(counter.values())
        segs = "".join(
            f'<span class="seg" style="width:{100 * counter[g] / total:.2f}%;background:{colors[g]}" title="{_esc(g)}: {counter[g]:,} ({_pct(counter[g], total)})"></span>'
            for g in labels
            if counter[g]
        )
        lines.append(f'<li><span class="f" title="{_esc(folder)}">{_esc(folder)}</span><span class="track full">{segs}</span><span class="num">{total:,}</span></li>')
    legend = "".join(f'<span><i class="dot" style="background:{colors[g]}"></i>{_esc(g)}</span>' for g in labels)
    return (
        '<section id="folders"><h2>Genres by folder</h2><p class="muted">Each top-level folder\'s classified files, split by genre.</p>'
        f'<div class="legend">{legend}</div><ol class="bars stacked">{"".join(lines)}</ol></section>'
    )


def _runner_up(r: Results, i: int) -> str:
    probs = sorted(((p[i] or 0.0, g) for g, p in r.probabilities.items()), reverse=True)
    if len(probs) < 2:
        return ""
    (p1, g1), (p2, g2) = probs[0], probs[1]
    return f"{g1} {p1:.0%} vs {g2} {p2:.0%}"


# A failure's kind (genrekit.results.FAILURE_KINDS) in the words of someone sorting out their music.
_FAILURE_WORDS = {
    "decode": "not audio or damaged",
    "unreadable": "unreadable",
    "missing": "missing",
    "too-long": "too long",
    "out-of-memory": "out of memory",
    "internal": "no result",
}


def _problem_lists(r: Results, statuses: list[str], root: str) -> str:
    uncertain = [i for i, s in enumerate(statuses) if s == "uncertain"]
    failed = [i for i, s in enumerate(statuses) if s == "failed"]
    parts = ['<section id="problems"><h2>Files to check</h2>']
    for kind, rows, say in (
        ("failed", failed, "could not be classified"),
        ("uncertain", uncertain, "the model hesitated between genres"),
    ):
        by_kind = Counter(_FAILURE_WORDS.get(r.error_kinds[i] or "", "other") for i in rows) if kind == "failed" else Counter()
        kinds = f' <span class="muted">({", ".join(f"{n:,} {words}" for words, n in by_kind.most_common())})</span>' if by_kind else ""
        parts.append(f'<h3>{kind.capitalize()}: {len(rows):,}{kinds}</h3>')
        if not rows:
            parts.append(f'<p class="muted">No file {say}.</p>')
            continue
        items = []
        for i in rows[:MAX_LISTED]:
            reason = (r.errors[i] or "no result") if kind == "failed" else (_runner_up(r, i) or f"confidence {r.confidences[i] or 0:.0%}")
            items.append(f'<li><code>{_esc(relative(r.paths[i], root))}</code><span class="why">{_esc(reason)}</span></li>')
        more = f'<p class="muted">and {len(rows) - MAX_LISTED:,} more: choose “{kind}” in the table below.</p>' if len(rows) > MAX_LISTED else ""
        parts.append(f'<ul class="problems {kind}">{"".join(items)}</ul>{more}')
    parts.append("</section>")
    return "".join(parts)


def _table_section() -> str:
    return """<section id="files"><h2>All files</h2>
<div class="controls"><input id="q" type="search" placeholder="Filter by path…" aria-label="filter by path">
<select id="fg" aria-label="genre"><option value="">all genres</option></select>
<select id="fs" aria-label="status"><option value="">any status</option><option>confident</option><option>uncertain</option><option>failed</option></select></div>
<p id="count" class="muted" aria-live="polite">The table needs JavaScript.</p>
<div class="scroll"><table id="t"><thead><tr><th data-k="path" aria-sort="ascending">path</th><th data-k="genre">genre</th><th data-k="conf" class="r">confidence</th><th data-k="dur" class="r">duration</th><th data-k="status">status</th></tr></thead><tbody></tbody></table></div>
<div class="pager"><button type="button" id="prev">← previous</button><span id="page"></span><button type="button" id="next">next →</button></div></section>"""


def _table_data(r: Results, statuses: list[str], labels: list[str], colors: dict[str, str], root: str) -> str:
    """The rows as compact columns: folders and error messages are listed once and referenced by index."""
    folder_index: dict[str, int] = {}
    error_index: dict[str, int] = {}
    genre_index = {g: i for i, g in enumerate(labels)}
    status_index = {"confident": 0, "uncertain": 1, "failed": 2}
    d, name, g, c, t, s, e = [], [], [], [], [], [], []
    for i, path in enumerate(r.paths):
        folder, base = os.path.split(relative(path, root))
        d.append(folder_index.setdefault(folder, len(folder_index)))
        name.append(base)
        genre = r.genres[i]
        g.append(genre_index[genre] if genre is not None else -1)
        conf = r.confidences[i]
        c.append(round(conf * 1000) if conf is not None else -1)
        dur = r.durations[i]
        t.append(round(dur * 10) if dur is not None else -1)
        s.append(status_index[statuses[i]])
        err = r.errors[i]
        e.append(error_index.setdefault(err, len(error_index)) if err else -1)
    payload = {
        "labels": labels,
        "colors": [colors[x] for x in labels],
        "dirs": list(folder_index),
        "errors": list(error_index),
        "d": d, "n": name, "g": g, "c": c, "t": t, "s": s, "e": e,
    }
    # "<" escaped: no string in the data can close the <script> element it sits in.
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).replace("<", "\\u003c")


_TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
{{mark}}
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:">
<title>{{title}} · genrekit report</title>
<style>{{style}}</style></head>
<body><main>
<header><h1>{{title}}</h1><p class="lede">A genrekit library report</p></header>
{{body}}
</main>
<script type="application/json" id="data">{{data}}</script>
<script>{{script}}</script>
</body></html>
"""

_STYLE = """
:root{--bg:#f5f6f8;--card:#fff;--text:#1d2330;--muted:#5b6475;--line:#d9dde5;--accent:#3b5bdb;--error-line:#e03131;color-scheme:light dark}
@media (prefers-color-scheme:dark){:root{--bg:#14171d;--card:#1d2129;--text:#e7e9ee;--muted:#9aa3b5;--line:#343a46;--accent:#7c96ff;--error-line:#ff6b6b}}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--text);font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
main{max-width:1100px;margin:2rem auto;padding:2rem 2.25rem;background:var(--card);border-radius:14px;box-shadow:0 1px 3px rgb(0 0 0/8%),0 8px 24px rgb(0 0 0/6%)}
h1{margin:0;font-size:2rem;letter-spacing:-.02em;overflow-wrap:anywhere}h2{margin:2rem 0 .25rem;font-size:1.3rem}h3{margin:1rem 0 .25rem;font-size:1rem}
.lede{margin:.25rem 0 0;color:var(--muted)}.muted{color:var(--muted);font-size:.9rem;margin:.25rem 0 .75rem}
code{font-size:.85em;overflow-wrap:anywhere}
.cards{list-style:none;padding:0;margin:1.25rem 0 .5rem;display:grid;grid-template-columns:repeat(auto-fit,minmax(120px,1fr));gap:.75rem}
.card{border:1px solid var(--line);border-radius:10px;padding:.6rem .8rem;display:flex;flex-direction:column}
.card .k{font-size:.75rem;text-transform:uppercase;letter-spacing:.06em;color:var(--muted)}.card .v{font-size:1.5rem;font-weight:600}.card .p{font-size:.8rem;color:var(--muted);min-height:1.2em}
.card-failed .v{color:var(--error-line)}
.bars{list-style:none;padding:0;margin:0}
.bars li{display:grid;grid-template-columns:minmax(5.5rem,9rem) 1fr 5.5rem;align-items:center;gap:.6rem;margin:.3rem 0}
.bars .g{all:unset;cursor:pointer;display:flex;align-items:center;gap:.4rem;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
.bars .g:hover,.bars .g:focus-visible{text-decoration:underline}
.bars .f{overflow:hidden;text-overflow:ellipsis;white-space:nowrap;font-size:.9rem}
.track{display:flex;height:1.1rem;border-radius:4px;overflow:hidden;min-width:0}.track.full{background:var(--line)}
.seg{display:block;height:100%}.seg.unc{opacity:.38}
.num{text-align:right;font-variant-numeric:tabular-nums}.num small{display:block;font-size:.7rem;color:var(--muted);line-height:1.1}
.dot{display:inline-block;width:.75rem;height:.75rem;border-radius:50%;flex:none}
.key{display:inline-block;width:.9rem;height:.7rem;background:var(--accent);vertical-align:baseline;margin-left:.3rem}.key.light{opacity:.38}
.legend{display:flex;flex-wrap:wrap;gap:.3rem .9rem;font-size:.85rem;margin:.25rem 0 .6rem}.legend span{display:inline-flex;align-items:center;gap:.3rem}
#histogram svg{display:block;width:100%;height:180px;border-bottom:1px solid var(--line)}
.h-conf{fill:var(--accent)}.h-unc{fill:var(--accent);opacity:.38}
.ticks{display:flex;justify-content:space-between;font-size:.8rem;color:var(--muted)}
.problems{list-style:none;padding:0;margin:0;max-height:22rem;overflow-y:auto;border:1px solid var(--line);border-radius:8px}
.problems li{padding:.35rem .6rem;border-bottom:1px solid var(--line);display:flex;flex-direction:column}.problems li:last-child{border-bottom:0}
.problems .why{font-size:.85rem;color:var(--muted);overflow-wrap:anywhere}.problems.failed .why{color:var(--error-line)}
.controls{display:flex;flex-wrap:wrap;gap:.5rem;margin:.5rem 0}
.controls input,.controls select,.pager button{font:inherit;padding:.35rem .5rem;border:1px solid var(--line);border-radius:6px;background:var(--card);color:var(--text)}
.controls input{flex:1 1 14rem;min-width:0}
.scroll{overflow-x:auto;border:1px solid var(--line);border-radius:8px}
table{border-collapse:collapse;width:100%;font-size:.9rem}
th,td{padding:.35rem .6rem;border-bottom:1px solid var(--line);text-align:left;vertical-align:top}
th{cursor:pointer;user-select:none;white-space:nowrap;position:sticky;top:0;background:var(--card)}
th[aria-sort=ascending]::after{content:" ▲"}th[aria-sort=descending]::after{content:" ▼"}
td.p{overflow-wrap:anywhere;min-width:12rem}td.p small{display:block;color:var(--muted)}
.r{text-align:right;font-variant-numeric:tabular-nums}
td .err{color:var(--error-line);font-size:.8rem;display:block}
.st-uncertain{color:var(--muted)}.st-failed{color:var(--error-line)}
.pager{display:flex;align-items:center;justify-content:space-between;gap:.5rem;margin:.6rem 0}
.pager button:disabled{opacity:.4}
@media (max-width:600px){main{margin:0;border-radius:0;padding:1rem}h1{font-size:1.5rem}
.bars li{grid-template-columns:5.5rem 1fr 4.5rem;gap:.4rem}th,td{padding:.3rem .4rem}td.p{min-width:9rem}}
"""

_SCRIPT = r"""
"use strict";
(() => {
const D = JSON.parse(document.getElementById("data").textContent);
const N = D.n.length, PAGE = 100, STATUS = ["confident", "uncertain", "failed"];
const $ = (id) => document.getElementById(id);
const q = $("q"), fg = $("fg"), fs = $("fs"), body = document.querySelector("#t tbody");
const lower = D.n.map((n, i) => (D.dirs[D.d[i]] + "/" + n).toLowerCase());
const esc = (s) => String(s).replace(/[&<>"]/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"})[c]);
D.labels.forEach((g) => fg.add(new Option(g, g)));
let key = "path", dir = 1, page = 0, rows = [];
const cmp = {
  path: (a, b) => (lower[a] < lower[b] ? -1 : lower[a] > lower[b] ? 1 : 0),
  genre: (a, b) => D.labels[D.g[a]].localeCompare(D.labels[D.g[b]]),
  conf: (a, b) => D.c[a] - D.c[b],
  dur: (a, b) => D.t[a] - D.t[b],
  status: (a, b) => D.s[a] - D.s[b],
};
const EMPTY = {genre: D.g, conf: D.c, dur: D.t};
function update() {
  const text = q.value.trim().toLowerCase(), genre = fg.value ? D.labels.indexOf(fg.value) : -2, status = fs.value ? STATUS.indexOf(fs.value) : -1;
  rows = [];
  for (let i = 0; i < N; i++) {
    if ((genre === -2 || D.g[i] === genre) && (status < 0 || D.s[i] === status) && (!text || lower[i].includes(text))) rows.push(i);
  }
  const c = cmp[key], none = EMPTY[key];
  rows.sort((a, b) => (none && none[a] < 0) - (none && none[b] < 0) || dir * (c(a, b) || a - b));  // failed files last either way
  page = 0;
  draw();
}
function draw() {
  const pages = Math.max(1, Math.ceil(rows.length / PAGE)), first = page * PAGE;
  const out = [];
  for (const i of rows.slice(first, first + PAGE)) {
    const g = D.g[i], dirName = D.dirs[D.d[i]];
    const genre = g < 0 ? "" : `<i class="dot" style="background:${D.colors[g]}"></i> ${esc(D.labels[g])}`;
    const err = D.e[i] < 0 ? "" : `<span class="err">${esc(D.errors[D.e[i]])}</span>`;
    out.push(`<tr><td class="p">${esc(D.n[i])}${dirName ? `<small>${esc(dirName)}</small>` : ""}${err}</td><td>${genre}</td>` +
      `<td class="r">${D.c[i] < 0 ? "" : (D.c[i] / 10).toFixed(1) + "%"}</td><td class="r">${D.t[i] < 0 ? "" : (D.t[i] / 10).toFixed(1) + " s"}</td>` +
      `<td class="st-${STATUS[D.s[i]]}">${STATUS[D.s[i]]}</td></tr>`);
  }
  body.innerHTML = out.join("");
  $("count").textContent = rows.length === N ? `${N.toLocaleString()} files` : `${rows.length.toLocaleString()} of ${N.toLocaleString()} files`;
  $("page").textContent = rows.length ? `${first + 1}–${Math.min(first + PAGE, rows.length)} · page ${page + 1} of ${pages}` : "no file matches";
  $("prev").disabled = page === 0;
  $("next").disabled = page >= pages - 1;
}
document.querySelectorAll("#t th").forEach((th) => th.addEventListener("click", () => {
  dir = th.dataset.k === key ? -dir : th.dataset.k === "conf" || th.dataset.k === "dur" ? -1 : 1;
  key = th.dataset.k;
  document.querySelectorAll("#t th").forEach((h) => h.removeAttribute("aria-sort"));
  th.setAttribute("aria-sort", dir > 0 ? "ascending" : "descending");
  update();
}));
document.querySelectorAll("[data-filter-genre]").forEach((b) => b.addEventListener("click", () => {
  fg.value = b.dataset.filterGenre;
  update();
  $("files").scrollIntoView();
}));
let timer = 0;
q.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(update, 150); });
fg.addEventListener("change", update);
fs.addEventListener("change", update);
$("prev").addEventListener("click", () => { page--; draw(); });
$("next").addEventListener("click", () => { page++; draw(); });
update();
})();
"""
