"""One parser for every number a user gives: recipe fields, ``--set`` values and CLI options.

    number("1e-3", "optim.lr", Range(0, 10))        # -> 0.001
    number(float("nan"), "--lr", Range(0, 10))       # CnnedgeError: --lr nan is not a number; ...

What is not a number, NaN, ±inf, integers past int64 and values outside the range are refused
in one line that names the field (or flag) and its range, before anything runs.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

from cnnedge.errors import CnnedgeError

INT64_MAX = 2**63 - 1
_NONE = ("none", "null", "~", "")


@dataclass(frozen=True)
class Range:
    """The values a numeric field takes: ``lo``..``hi`` (None: unbounded, still finite)."""

    lo: float | None = None
    hi: float | None = None
    integer: bool = False
    lo_open: bool = False
    hi_open: bool = False
    optional: bool = False  # None is a value (e.g. "the whole split")
    note: str = ""  # what special values mean: "0 = off"

    def __str__(self) -> str:
        kind = "an integer " if self.integer else ""
        lo, hi = _show(self.lo), _show(self.hi)
        if self.lo is not None and self.hi is not None:
            text = f"{kind}in {'(' if self.lo_open else '['}{lo}, {hi}{')' if self.hi_open else ']'}"
        elif self.lo is not None:
            text = f"{kind}{'>' if self.lo_open else '>='} {lo}"
        elif self.hi is not None:
            text = f"{kind}{'<' if self.hi_open else '<='} {hi}"
        else:
            text = "an integer" if self.integer else "a finite number"
        text += ", or none" if self.optional else ""
        return f"{text} ({self.note})" if self.note else text

    def holds(self, v) -> bool:
        lo_ok = self.lo is None or (v > self.lo if self.lo_open else v >= self.lo)
        hi_ok = self.hi is None or (v < self.hi if self.hi_open else v <= self.hi)
        return lo_ok and hi_ok


def _show(v) -> str:
    if v is None:
        return ""
    return str(int(v)) if float(v).is_integer() and abs(v) < 1e15 else f"{v:g}"


def _named(name: str, value) -> str:
    """``--lr nan`` for a flag, ``optim.lr=nan`` for a recipe key."""
    return f"{name} {value}" if name.startswith("-") else f"{name}={value}"


def number(value, name: str, rng: Range):
    """``value`` (a number or its text) as an int or float inside ``rng``; a CnnedgeError naming
    ``name`` and the range otherwise."""
    if value is None or (isinstance(value, str) and value.strip().lower() in _NONE):
        if rng.optional:
            return None
        raise CnnedgeError(f"{_must(name, rng)}; got none")
    v = _parse(value, name, rng)
    if isinstance(v, float) and math.isnan(v):
        raise CnnedgeError(f"{_named(name, 'nan')} is not a number; it must be {rng}")
    if isinstance(v, float) and math.isinf(v):
        raise CnnedgeError(f"{_named(name, v)} is not finite; it must be {rng}")
    if rng.integer:
        if isinstance(v, float) and not v.is_integer():
            raise CnnedgeError(f"{_must(name, rng)}; got {value!r}")
        shown = repr(v) if isinstance(v, float) else v  # 1e+30, not its 31 digits
        v = int(v)
        if abs(v) > INT64_MAX or not rng.holds(v):
            raise CnnedgeError(f"{_named(name, shown)} is out of range; it must be {rng}")
        return v
    v = float(v)
    if not rng.holds(v):
        raise CnnedgeError(f"{_named(name, repr(v))} is out of range; it must be {rng}")
    return v


def _must(name: str, rng: Range) -> str:
    bounded = rng.lo is not None or rng.hi is not None
    return f"{name} must be {'a number ' if bounded and not rng.integer else ''}{rng}"


def _parse(value, name: str, rng: Range):
    if isinstance(value, bool):  # True is an int to Python, never a count to a user
        raise CnnedgeError(f"{_must(name, rng)}; got {value!r}")
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, str):
        text = value.strip().replace("_", "")
        try:
            return int(text)
        except ValueError:
            pass
        try:
            return float(text)
        except ValueError:
            pass
    raise CnnedgeError(f"{_must(name, rng)}; got {value!r}")
