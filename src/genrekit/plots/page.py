"""The HTML page that gathers a batch of predictions (``genrekit demo``): each track's top genres as bars in
the genre colours of :mod:`genrekit.plots.palette`, beside its timeline image (:func:`genrekit.plots.predictions.plot_timeline`).

One self-contained file: styles inline, images referenced by relative path, nothing fetched.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path

from .._text import percent
from ..results import Prediction, PredictionError
from .palette import genre_color

__all__ = ["write_html_summary"]


def _genre_html(prediction: Prediction) -> str:
    if prediction.genre is None:
        return "<span class='note'>silent: no genre</span>"
    guess = " <span class='note'>(uncertain)</span>" if prediction.uncertain else ""
    return html.escape(prediction.genre) + guess


def write_html_summary(
    results: Sequence[Prediction | PredictionError], out: str | Path, *, model_name: str, plots: dict[str, str], top_k: int = 3
) -> Path:
    """One self-contained HTML page: a table of every track's top genres with its timeline image."""
    rows = []
    for r in results:
        name = html.escape(Path(r.path or "").name)
        if isinstance(r, PredictionError):
            rows.append(f"<tr><td class='file'>{name}</td><td colspan='3' class='err'>{html.escape(r.error)}</td></tr>")
            continue
        labels = list(r.probabilities)
        bars = "".join(
            f"<div class='bar'><span class='lbl'>{html.escape(g)}</span><span class='track'><span class='fill' "
            f"style='width:{p * 100:.1f}%;background:{genre_color(g, labels)}'></span></span><span class='pct'>{percent(p)}</span></div>"
            for g, p in r.top(top_k)
        )
        img = plots.get(r.path or "")
        rows.append(
            f"<tr><td class='file'>{name}</td><td class='genre'>{_genre_html(r)}</td><td>{bars}</td>"
            f"<td class='timeline'>{f'<img src={html.escape(img)!r} alt={name!r}>' if img else ''}</td></tr>"
        )
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>genrekit: {html.escape(model_name)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem; color: #222; }}
table {{ border-collapse: collapse; width: 100%; }} td, th {{ border-bottom: 1px solid #ddd; padding: .5rem; vertical-align: middle; text-align: left; }}
.file {{ overflow-wrap: anywhere; max-width: 14rem; }} .timeline {{ width: 45%; }}
.genre {{ font-weight: bold; font-size: 1.2rem; }} .err {{ color: #b00020; }} .note {{ color: #8a6d00; font-weight: normal; font-size: .9rem; }}
.bar {{ display: grid; grid-template-columns: 5rem 10rem 3rem; align-items: center; gap: .4rem; margin: .15rem 0; }}
.track {{ background: #eee; height: .8rem; }} .fill {{ height: 100%; display: block; }} .pct {{ font-size: .85rem; text-align: right; }}
img {{ display: block; width: 100%; max-width: 640px; height: auto; }}
@media (max-width: 800px) {{ /* a phone: one track per block, the timeline under its bars */
  body {{ margin: 1rem; }} tr:first-child {{ display: none; }} tr, td {{ display: block; }} td {{ border: 0; padding: .25rem 0; }}
  tr {{ border-bottom: 1px solid #ddd; padding: .5rem 0; }} .file {{ max-width: none; }} .timeline {{ width: auto; }} }}
</style></head><body>
<h1>genrekit predictions</h1><p>Model: {html.escape(model_name)}. Probabilities are the mean over the track's segments;
the images show each genre's probability over time.</p>
<table><tr><th>file</th><th>genre</th><th>top {top_k}</th><th>timeline</th></tr>
{''.join(rows)}
</table></body></html>
"""
    out = Path(out)
    out.write_text(page)
    return out
