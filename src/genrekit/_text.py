"""Text for people: values listed as a sentence in error messages and help, probabilities as percentages."""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["percent", "words"]


def words(values: Iterable[object]) -> str:
    """``a, b or c``: allowed values as a sentence, not a Python repr like ``['a', 'b', 'c']``."""
    items = [str(v) for v in values]
    if not items:
        return "none"
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} or {items[-1]}"


def percent(p: float) -> str:
    """One way to print a probability everywhere (tables, plots, both pages): whole percent, ``<1%`` for traces."""
    return "100%" if p >= 0.995 else "<1%" if p < 0.005 else f"{p:.0%}"
