"""The model registry (timm style): builders registered by name, looked up by name."""

from __future__ import annotations

import inspect
from collections.abc import Callable

from cnnedge.errors import CnnedgeError
from cnnedge.utils import unknown

_REGISTRY: dict[str, Callable] = {}


def register_model(fn: Callable) -> Callable:
    """Decorator: register a builder ``fn(num_classes, channels, **options)`` under its name."""
    name = fn.__name__
    if name in _REGISTRY:
        raise CnnedgeError(f"model '{name}' is already registered")
    _REGISTRY[name] = fn
    return fn


def list_models() -> list[str]:
    return sorted(_REGISTRY)


def _builder(name: str) -> Callable:
    if name not in _REGISTRY:
        raise unknown("model", name, list_models())
    return _REGISTRY[name]


def model_help(name: str) -> str:
    """First line of the builder's docstring."""
    doc = inspect.getdoc(_builder(name)) or ""
    return doc.splitlines()[0] if doc else ""


def create_model(name: str, *, num_classes: int, channels: int, **kwargs):
    """Build registered model ``name``; ``kwargs`` must be options of its builder."""
    fn = _builder(name)
    valid = [p for p in inspect.signature(fn).parameters if p not in ("num_classes", "channels")]
    bad = sorted(set(kwargs) - set(valid))
    if bad:
        raise CnnedgeError(
            f"model '{name}' has no option(s) {', '.join(bad)}; valid: {', '.join(valid) or '(none)'}"
        )
    if int(num_classes) < 2:
        raise CnnedgeError(f"num_classes must be >= 2, got {num_classes}")
    if int(channels) not in (1, 3):
        raise CnnedgeError(f"channels must be 1 or 3, got {channels}")
    return fn(int(num_classes), int(channels), **kwargs)
