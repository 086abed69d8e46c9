"""Typed values of dataclass fields: a ``--set KEY=VALUE`` string parsed for the field's type,
and any value checked (and losslessly converted) against a type hint — unions, literals,
bools, finite numbers in range, strings, tuples, mappings — with errors that name the key."""

from __future__ import annotations

import types
import typing
from typing import Any, Dict, Literal, Tuple

import yaml

from cnnedge.errors import CnnedgeError
from cnnedge.numbers import Range, number


def parse_for_type(raw: str, tp, key: str):
    """Strings stay strings for str fields ('none' is not None there); others parse as YAML."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is str or (origin is Literal and all(isinstance(a, str) for a in args)):
        return raw
    if raw.strip().lower() in ("none", "null", "~", ""):
        return None
    inner = [typing.get_origin(a) for a in args] if origin is typing.Union else [origin]
    if any(o in (tuple, list) for o in inner) and "," in raw and not raw.strip().startswith("["):
        raw = f"[{raw}]"  # train.image_size=32,32
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError as e:
        raise CnnedgeError(f"cannot parse value for {key}: {raw!r} ({e.problem})")


def coerce(value, tp, key: str, ranges: dict | None = None):
    """Check (and losslessly convert) ``value`` against type ``tp``; raise on mismatch.
    Numbers must also lie in ``ranges[key]`` where given (a recipe field's range)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, getattr(types, "UnionType", ())):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return coerce(value, a, key, ranges)
            except CnnedgeError as e:
                errors.append(str(e))
        raise CnnedgeError(errors[0] if errors else f"{key}: bad value {value!r}")
    if origin is Literal:
        if value not in args:
            raise CnnedgeError(f"{key} must be one of {', '.join(map(str, args))}; got {value!r}")
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise CnnedgeError(f"{key} must be true or false; got {value!r}")
    if tp in (int, float):  # one parser: the type, a finite value, the field's range
        return number(value, key, (ranges or {}).get(key, Range(integer=tp is int)))
    if tp is str:
        if isinstance(value, str):
            return value
        raise CnnedgeError(f"{key} must be a string; got {value!r}")
    if origin in (tuple, Tuple):
        if not isinstance(value, (list, tuple)):
            raise CnnedgeError(f"{key} must be a list; got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(coerce(v, args[0], key, ranges) for v in value)
        if len(value) != len(args):
            raise CnnedgeError(f"{key} must have {len(args)} items; got {value!r}")
        return tuple(coerce(v, a, key, ranges) for v, a in zip(value, args))
    if origin in (dict, Dict):
        if not isinstance(value, dict):
            raise CnnedgeError(f"{key} must be a mapping; got {value!r}")
        return dict(value)
    return value
