"""Checks for numeric settings, shared by the constructors and the ``eventmon`` command.

Each check returns the value in the type eventmon works with, or raises
:class:`~eventmon.ConfigurationError` with one line that names the setting,
says what it must be and shows what it got::

    seconds("interval", "15")
    # ConfigurationError: interval must be a number of seconds > 0 and <= 1,000,000,000,
    # got the string '15'

A string is refused rather than converted: ``interval="15"`` is a mistake that
would otherwise surface later, far from where it was made. NaN and infinities
are refused everywhere: a wait of ``inf`` kills a background thread and a NaN
compares false with every bound.

The ``arg_*`` factories wrap the same checks as ``argparse`` types, so the
command line and the Python API refuse the same values with the same words.
"""

from __future__ import annotations

import argparse
import itertools
import math
import numbers
import threading
from collections.abc import Callable, Iterable
from typing import cast

from eventmon._exceptions import ConfigurationError

__all__ = [
    "arg_buckets",
    "arg_integer",
    "arg_number",
    "bucket_bounds",
    "integer",
    "integer_range",
    "number",
    "seconds",
]

#: the longest duration a setting may give (about 31 years): ``threading`` raises
#: OverflowError for waits beyond ``TIMEOUT_MAX``, which would kill a background thread
MAX_SECONDS = min(1e9, threading.TIMEOUT_MAX)


def _fmt(x: float) -> str:
    return f"{int(x):,}" if float(x).is_integer() and abs(x) < 1e15 else f"{x:g}"


def _range(
    minimum: float | None, above: float | None, maximum: float | None, below: float | None
) -> str:
    if minimum is not None and maximum is not None:
        return f"between {_fmt(minimum)} and {_fmt(maximum)}"
    parts = []
    if minimum is not None:
        parts.append(f">= {_fmt(minimum)}")
    if above is not None:
        parts.append(f"> {_fmt(above)}")
    if maximum is not None:
        parts.append(f"<= {_fmt(maximum)}")
    if below is not None:
        parts.append(f"< {_fmt(below)}")
    return " and ".join(parts)


def _refusal(
    value: object,
    *,
    whole: bool,
    unit: str = "",
    minimum: float | None = None,
    above: float | None = None,
    maximum: float | None = None,
    below: float | None = None,
) -> str | None:
    """None if ``value`` is acceptable, else what it must be (``"must be ..."``)."""
    ok = not isinstance(value, bool) and isinstance(
        value, numbers.Integral if whole else numbers.Real
    )
    if ok:
        v = float(cast(numbers.Real, value))
        ok = (
            math.isfinite(v)
            and (minimum is None or v >= minimum)
            and (above is None or v > above)
            and (maximum is None or v <= maximum)
            and (below is None or v < below)
        )
    if ok:
        return None
    kind = "a whole number" if whole else "a number"
    if unit:
        kind += f" of {unit}"
    return f"must be {kind} {_range(minimum, above, maximum, below)}".rstrip()


def _got(value: object) -> str:
    return f"got the string {value!r}" if isinstance(value, str) else f"got {value!r}"


def number(
    name: str,
    value: object,
    *,
    minimum: float | None = None,
    above: float | None = None,
    maximum: float | None = None,
    below: float | None = None,
    unit: str = "",
) -> float:
    """``value`` as a finite float within the bounds (``minimum``/``maximum`` inclusive)."""
    must = _refusal(
        value, whole=False, unit=unit, minimum=minimum, above=above, maximum=maximum, below=below
    )
    if must is not None:
        raise ConfigurationError(f"{name} {must}, {_got(value)}")
    return float(cast(numbers.Real, value))


def integer(
    name: str, value: object, *, minimum: int | None = None, maximum: int | None = None
) -> int:
    """``value`` as an int within ``[minimum, maximum]``; floats and bools are refused."""
    must = _refusal(value, whole=True, minimum=minimum, maximum=maximum)
    if must is not None:
        raise ConfigurationError(f"{name} {must}, {_got(value)}")
    return int(cast(numbers.Integral, value))


def integer_range(
    names: tuple[str, str], low: object, high: object, *, minimum: int | None = None
) -> tuple[int, int]:
    """Two whole numbers, each >= ``minimum``, the first no greater than the second."""
    lo = integer(names[0], low, minimum=minimum)
    hi = integer(names[1], high, minimum=minimum)
    if hi < lo:
        raise ConfigurationError(f"{names[1]} ({hi}) must be at least {names[0]} ({lo})")
    return lo, hi


def seconds(
    name: str, value: object, *, allow_zero: bool = False, minimum: float | None = None
) -> float:
    """A duration in seconds: > 0 (or >= 0 with ``allow_zero``, or >= ``minimum``),
    short enough for ``threading`` to wait for."""
    if minimum is None and allow_zero:
        minimum = 0.0
    above = None if minimum is not None else 0.0
    return number(name, value, minimum=minimum, above=above, maximum=MAX_SECONDS, unit="seconds")


def _bounds(values: Iterable[object]) -> tuple[tuple[float, ...], str | None]:
    bounds: list[float] = []
    for v in values:
        must = _refusal(v, whole=False, unit="seconds", above=0.0)
        if must is not None:
            return (), f"each bound {must}, {_got(v)}"
        bounds.append(float(cast(numbers.Real, v)))
    if not bounds:
        return (), "give at least one bound"
    for a, b in itertools.pairwise(bounds):
        if a >= b:
            what = f"{b:g} repeats" if a == b else f"{b:g} comes after {a:g}"
            return (), f"bounds must be strictly increasing; {what}"
    return tuple(bounds), None


def bucket_bounds(name: str, values: Iterable[object]) -> tuple[float, ...]:
    """Histogram bounds: at least one, each a positive finite number, strictly increasing."""
    bounds, problem = _bounds(values)
    if problem is not None:
        raise ConfigurationError(f"{name}: {problem}")
    return bounds


# --------------------------------------------------------------- argparse types


def _parse_number(text: str, *, whole: bool) -> object:
    text = text.strip()
    try:
        return int(text)
    except ValueError:
        pass
    try:
        f = float(text)
    except ValueError:
        return text  # refused below with "got the string ..."
    # "1e8" is a whole number, written the way people write big ones.
    return int(f) if whole and f.is_integer() else f


def arg_number(
    *,
    minimum: float | None = None,
    above: float | None = None,
    maximum: float | None = None,
    below: float | None = None,
    unit: str = "",
) -> Callable[[str], float]:
    """An ``argparse`` type: the text as a float checked like :func:`number`."""

    def parse(text: str) -> float:
        value = _parse_number(text, whole=False)
        must = _refusal(
            value,
            whole=False,
            unit=unit,
            minimum=minimum,
            above=above,
            maximum=maximum,
            below=below,
        )
        if must is not None:
            raise argparse.ArgumentTypeError(f"{must}, got {text!r}")
        return float(cast(numbers.Real, value))

    parse.__name__ = "number"
    return parse


def arg_integer(*, minimum: int | None = None, maximum: int | None = None) -> Callable[[str], int]:
    """An ``argparse`` type: the text as an int checked like :func:`integer`."""

    def parse(text: str) -> int:
        value = _parse_number(text, whole=True)
        must = _refusal(value, whole=True, minimum=minimum, maximum=maximum)
        if must is not None:
            raise argparse.ArgumentTypeError(f"{must}, got {text!r}")
        return int(cast(numbers.Integral, value))

    parse.__name__ = "whole number"
    return parse


def arg_buckets(text: str) -> tuple[float, ...]:
    """An ``argparse`` type: comma-separated histogram bounds, checked like
    :func:`bucket_bounds`."""
    parts = [p for p in (s.strip() for s in text.split(",")) if p]
    bounds, problem = _bounds(_parse_number(p, whole=False) for p in parts)
    if problem is not None:
        raise argparse.ArgumentTypeError(problem.replace("got the string", "got"))
    return bounds
