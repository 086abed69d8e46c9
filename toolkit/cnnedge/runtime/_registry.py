"""The runtime registry (timm style): :class:`~cnnedge.runtime.base.Runner` subclasses registered
by name with ``@register_runtime``, looked up by name, opened with :func:`load`."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from cnnedge import artifacts
from cnnedge.artifacts import one_line
from cnnedge.errors import CnnedgeError
from cnnedge.utils import unknown

if TYPE_CHECKING:
    from cnnedge.runtime.base import Runner


@dataclass
class _RuntimeSpec:
    name: str
    cls: type
    check: Callable[[], tuple[bool, str]]
    help: str
    modes: dict = field(default_factory=dict)  # bench name -> mode (keras: function, predict)


_RUNTIMES: dict[str, _RuntimeSpec] = {}


def register_runtime(name: str, *, check: Callable, help: str = "", modes=None):
    """Class decorator: register a :class:`Runner` subclass as runtime ``name``.

    ``check()`` returns (available, reason/install hint); the artifact table says which files it
    runs; ``modes`` maps bench row names to ways of calling it (default: one row, ``name``).
    """

    def deco(cls):
        if name in _RUNTIMES:
            raise CnnedgeError(f"runtime '{name}' is already registered")
        cls.runtime = name
        _RUNTIMES[name] = _RuntimeSpec(name, cls, check, help, dict(modes or {name: None}))
        return cls

    return deco


def list_runtimes() -> list[str]:
    """Every registered runtime name (available or not)."""
    return sorted(_RUNTIMES)


def _spec(name: str) -> _RuntimeSpec:
    if name not in _RUNTIMES:
        raise unknown("runtime", name, list_runtimes())
    return _RUNTIMES[name]


def runtime_class(name: str) -> type:
    return _spec(name).cls


def modes(name: str) -> dict:
    """Bench row names of runtime ``name`` and the mode each one calls (None: the default)."""
    return dict(_spec(name).modes)


def runtime_status(name: str) -> tuple[bool, str]:
    """(available, "ok" or why not and what to install)."""
    spec = _spec(name)
    try:
        return spec.check()
    except Exception as e:  # noqa: BLE001 - a broken install must not crash `cnnedge bench`
        return False, f"not available: {type(e).__name__}: {one_line(e)}"


def available_runtimes() -> list[str]:
    return [n for n in list_runtimes() if runtime_status(n)[0]]


def runtime_help(name: str) -> str:
    return _spec(name).help


def runtimes_for(path) -> list[str]:
    """Registered runtimes that can execute the file ``path`` (artifact table), default first."""
    return [n for n in artifacts.runtimes_for(path) if n in _RUNTIMES]


def default_runtime(path) -> str:
    return artifacts.lookup(path).runtimes[0]


def default_threads() -> int:
    return max(1, os.cpu_count() or 1)


def load(
    path, runtime: str | None = None, threads: int | None = None, mode: str | None = None, **opts
) -> Runner:
    """Open an artifact (or a .keras/.h5 model) with ``runtime`` (default: the artifact table's
    first for the file); ``mode``: how a runtime with modes is called (keras: function, predict)."""
    path = Path(path)
    name = runtime or default_runtime(path)
    spec = _spec(name)
    if not path.exists():
        raise CnnedgeError(f"no model file at {path}")
    ext = path.suffix.lower()
    if name not in runtimes_for(path):
        raise CnnedgeError(
            f"runtime '{name}' cannot run {ext} files ({path}); "
            + (
                "it needs a fixed input size: cnnedge export RUN --format tflm"
                if name in artifacts.STATIC_ONLY
                else f"runtimes for {ext}: {', '.join(runtimes_for(path))}"
            )
        )
    ok, reason = runtime_status(name)
    if not ok:
        raise CnnedgeError(f"runtime '{name}' is {reason}")
    if threads is not None and int(threads) < 1:
        raise CnnedgeError(f"threads must be >= 1, got {threads}")
    threads = int(threads) if threads else default_threads()
    if mode is not None:
        if mode not in spec.modes.values():
            raise CnnedgeError(f"runtime '{name}' has no mode {mode!r}")
        opts["mode"] = mode
    return spec.cls(path, threads=threads, **opts)
