"""musicnn's tags beside the genre: their names, the duplicate map, a track's strongest tags, their text form.

The shipped models run ``MSD_musicnn`` (Last.fm's top 50 tags: rock, electronic, dance, folk, punk, soul,
ambient, female vocalists, 80s ...) and ``MTT_musicnn`` (MagnaTagATune's 50: guitar, piano, techno, vocal,
slow, strings ...) on every segment; ten genres cannot describe an electronic, folk or ambient track, but
these 100 words can. A model over musicnn embeddings computes the 100 scores anyway (they are its inputs),
so they come at no extra cost; cnn1/cnn2 have none.

A tag's score is the tagger's own sigmoid output: the probability that the tag applies, each tag on its
own (multi-label: the scores of a track do not sum to 1). A track's score is the mean over the segments
that hold sound, as for the genres; scores are never re-normalized. A word both taggers know, or one
tagger spells two ways ("female vocalists" in MSD, "female vocal" in MTT), is one tag with the stronger
of the scores, from the model that gave it (:data:`DUPLICATES`).

This module imports no torch: the names come from the weight files' own metadata, so a classifier run by
onnxruntime alone can name its tags.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

import numpy as np

__all__ = ["SOURCES", "DEFAULT_TAGS", "DUPLICATES", "Tag", "tag_names", "display_names", "merge_tags", "format_tags", "uncertain_hint"]

SOURCES: tuple[str, ...] = ("MSD_musicnn", "MTT_musicnn")
"""The taggers, in the order of the 100 scores (that of :data:`genrekit.models.musicnn.MODELS`)."""
_WEIGHT_FILES = {"MSD_musicnn": "musicnn_msd.safetensors", "MTT_musicnn": "musicnn_mtt.safetensors"}
DEFAULT_TAGS = 5
"""Tags listed per track where the output is for programs (JSON, CSV, results files, the service)."""

_MSD, _MTT = SOURCES
DUPLICATES: dict[str, tuple[tuple[str, str], ...]] = {
    # The same word in both vocabularies.
    "rock": ((_MSD, "rock"), (_MTT, "rock")),
    "pop": ((_MSD, "pop"), (_MTT, "pop")),
    "electronic": ((_MSD, "electronic"), (_MTT, "electronic")),
    "dance": ((_MSD, "dance"), (_MTT, "dance")),
    "metal": ((_MSD, "metal"), (_MTT, "metal")),
    "ambient": ((_MSD, "ambient"), (_MTT, "ambient")),
    "country": ((_MSD, "country"), (_MTT, "country")),
    "guitar": ((_MSD, "guitar"), (_MTT, "guitar")),
    # One meaning, spelled differently, across the taggers or within one.
    "female vocalists": ((_MSD, "female vocalists"), (_MSD, "female vocalist"), (_MTT, "female vocal"), (_MTT, "female voice")),
    "male vocalists": ((_MSD, "male vocalists"), (_MTT, "male vocal"), (_MTT, "male voice")),
    "vocals": ((_MTT, "vocal"), (_MTT, "vocals")),
    "no vocals": ((_MTT, "no vocal"), (_MTT, "no vocals"), (_MTT, "no voice")),
    "beats": ((_MTT, "beat"), (_MTT, "beats")),
}
"""Shown name -> the (tagger, tag) pairs it stands for; every other tag is shown alone, in lower case.
Near-synonyms of different meaning stay apart ("instrumental" vs "no vocals", "electronica" vs
"electronic", "classic" vs "classical", "female" and "woman" vs "female vocalists")."""


@dataclass(frozen=True)
class Tag:
    """A word that describes the music, the tagger it comes from, and its score in [0, 1] (see the module docstring)."""

    tag: str
    source: str
    score: float

    def to_dict(self) -> dict[str, Any]:
        return {"tag": self.tag, "source": self.source, "score": round(self.score, 6)}


def _safetensors_metadata(name: str) -> dict[str, str]:
    """The ``__metadata__`` of a shipped safetensors file: its JSON header, read without a tensor library."""
    with (resources.files("genrekit") / "weights" / name).open("rb") as f:
        (size,) = struct.unpack("<Q", f.read(8))
        return dict(json.loads(f.read(size)).get("__metadata__", {}))


@lru_cache(maxsize=1)
def tag_names() -> tuple[tuple[str, str], ...]:
    """The 100 (tagger, tag) pairs in the order of the scores models compute, as the taggers name them."""
    return tuple((source, tag) for source in SOURCES for tag in json.loads(_safetensors_metadata(_WEIGHT_FILES[source])["tags"]))


@lru_cache(maxsize=1)
def display_names() -> tuple[str, ...]:
    """The shown name of each of the 100 scores: its :data:`DUPLICATES` entry, else the tag in lower case."""
    shown = {pair: name for name, pairs in DUPLICATES.items() for pair in pairs}
    return tuple(shown.get(pair, pair[1].lower()) for pair in tag_names())


def merge_tags(scores: np.ndarray) -> tuple[Tag, ...]:
    """The 100 scores of a segment or a track as tags, duplicates once with the stronger score, strongest first.

    Parameters
    ----------
    scores : ndarray of shape (100,)
        In :func:`tag_names` order.
    """
    names, pairs = display_names(), tag_names()
    best: dict[str, Tag] = {}
    for name, (source, _), score in zip(names, pairs, scores.tolist()):
        if name not in best or score > best[name].score:
            best[name] = Tag(name, source, score)
    return tuple(sorted(best.values(), key=lambda t: -t.score))


def format_tags(tags: Sequence[Tag] | None, k: int = DEFAULT_TAGS) -> str:
    """The ``k`` first tags as ``tag:score;...`` (scores to 4 decimals): the ``tags`` column of CSV and results files."""
    return ";".join(f"{t.tag}:{t.score:.4f}" for t in (tags or ())[:k])


def uncertain_hint(tags: Sequence[Tag] | None, labels: Sequence[str], n: int = 2) -> str:
    """The line shown under an uncertain genre: the ``n`` strongest tags that are not one of the model's genres
    (what the track sounds like instead); empty when there are none. The page (serve/static/app.js) writes the same."""
    like = [t.tag for t in tags or () if t.tag not in labels][:n]
    count = "ten" if len(labels) == 10 else str(len(labels))
    return f"not clearly one of the {count} genres; sounds like: {', '.join(like)}" if like else ""
