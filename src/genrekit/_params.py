"""Declared parameter constraints and the one helper that checks them (scikit-learn's ``_parameter_constraints``).

A config dataclass lists each field's constraint once, in a ``_constraints`` class attribute, and calls
:func:`check_params` from ``__post_init__``; :func:`from_dict` builds one (and its nested configs) from a
saved dict. Every failure is a one-line :class:`ParameterError` naming the key, the allowed values in
words and the value received, e.g. ``The 'n_mels' parameter must be an integer > 0. Got 12.5 instead.``
The error carries the parameter, the allowed values and the value as fields
(:meth:`~genrekit.exceptions.ParameterError.invalid`), from which the CLI words the refusal for the option
the user typed (``strategy`` -> ``--split``).
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from .exceptions import ParameterError
from ._text import words

__all__ = ["Interval", "OneOf", "check_params", "check_values", "from_dict"]

T = TypeVar("T")


@dataclass(frozen=True)
class Interval:
    """A real (or, with ``integer``, whole) number in a range; ``None`` allowed with ``optional``.

    ``closed`` says which ends belong to the range: ``"left"`` is ``[low, high)``, ``"right"`` ``(low, high]``,
    ``"both"`` and ``"neither"`` as they say; an absent end is unbounded.
    """

    low: float | None = None
    high: float | None = None
    closed: str = "left"
    integer: bool = False
    optional: bool = False

    def describe(self) -> str:
        """The range in words, without ``None`` (which :func:`check_values` adds for an optional one)."""
        kind = "an integer" if self.integer else "a number"
        low_in, high_in = self.closed in ("left", "both"), self.closed in ("right", "both")
        if self.low is not None and self.high is not None:
            text = f"{kind} in {'[' if low_in else '('}{self.low:g}, {self.high:g}{']' if high_in else ')'}"
        elif self.low is not None:
            text = f"{kind} {'>=' if low_in else '>'} {self.low:g}"
        elif self.high is not None:
            text = f"{kind} {'<=' if high_in else '<'} {self.high:g}"
        else:
            text = kind
        return text

    def accepts(self, value: object) -> bool:
        if value is None:
            return self.optional
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            return False
        if self.integer and not isinstance(value, numbers.Integral):
            return False
        x = float(value)
        if math.isnan(x):
            return False
        low_in, high_in = self.closed in ("left", "both"), self.closed in ("right", "both")
        above = self.low is None or (x >= self.low if low_in else x > self.low)
        below = self.high is None or (x <= self.high if high_in else x < self.high)
        return above and below


@dataclass(frozen=True)
class OneOf:
    """One of a fixed set of values (strings, usually)."""

    values: tuple[Any, ...]

    def describe(self) -> str:
        return f"one of {words(self.values)}"

    def accepts(self, value: object) -> bool:
        return any(value == v and type(value) is type(v) for v in self.values)


Constraint = Interval | OneOf


def check_params(obj: object, constraints: Mapping[str, Constraint]) -> None:
    """Raise :class:`ParameterError` for the first field of ``obj`` outside its declared constraint."""
    check_values({name: getattr(obj, name) for name in constraints}, constraints)


def check_values(values: Mapping[str, object], constraints: Mapping[str, Constraint], *, owner: str | None = None) -> None:
    """:func:`check_params` for a function's arguments (``owner``: the function, named in the message)."""
    for name, constraint in constraints.items():
        value = values[name]
        if not constraint.accepts(value):
            optional = "None" if isinstance(constraint, Interval) and constraint.optional else None
            raise ParameterError.invalid(name, constraint.describe(), value, owner=owner, optional=optional)


def from_dict(cls: type[T], data: object, *, what: str, nested: Mapping[str, type] | None = None) -> T:
    """Build the config dataclass ``cls`` from a saved dict: unknown keys, a non-dict and nested configs
    (``nested``: field -> dataclass) are one-line errors naming the key, never a ``TypeError`` traceback."""
    if not isinstance(data, Mapping):
        raise ParameterError(f"A {what} must be a JSON object of its fields. Got {type(data).__name__} instead.")
    known = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]  # cls is a dataclass type
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ParameterError(f"Unknown {what} keys {', '.join(unknown)}; known keys are {', '.join(sorted(known))}.")
    values = dict(data)
    for name, sub in (nested or {}).items():
        if isinstance(values.get(name), Mapping):
            values[name] = from_dict(sub, values[name], what=f"{what} {name!r}")
    return cls(**values)
