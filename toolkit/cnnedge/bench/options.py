"""Bench options: which runtimes (bench rows), thread counts, batch sizes and CI gates."""

from __future__ import annotations

from cnnedge.errors import CnnedgeError
from cnnedge.numbers import Range, number
from cnnedge.utils import split_list, unknown

BATCH_SIZES = (1, 32, 256)
GATES = ("accuracy", "speed", "throughput")


def row_runtimes(names) -> list[tuple[str, str, str | None]]:
    """(bench row name, registry runtime, mode) for registry runtimes ``names``: a runtime with
    modes gives one row per mode (keras: keras-tf.function, keras-predict)."""
    from cnnedge import runtime

    return [(row, name, mode) for name in names for row, mode in runtime.modes(name).items()]


def bench_runtimes() -> list[str]:
    """Every bench row name: the registry's runtimes with their modes."""
    from cnnedge import runtime

    return [row for row, _, _ in row_runtimes(runtime.list_runtimes())]


def select_runtimes(names) -> list[str] | None:
    """Bench row names to keep (None: all); a registry name stands for all its rows."""
    from cnnedge import runtime

    parts = split_list(names)
    if not parts:
        return None
    valid = bench_runtimes()
    out: list[str] = []
    for part in parts:
        if part in runtime.list_runtimes():
            out.extend(row for row, _, _ in row_runtimes([part]))
        elif part in valid:
            out.append(part)
        else:
            raise unknown("runtime", part, [*valid, *(n for n in runtime.list_runtimes() if n not in valid)])
    return list(dict.fromkeys(out))


def parse_threads(text) -> list[int]:
    """ "1,2" -> [1, 2]; "all" -> all cores; default (None/empty): 1 and all cores."""
    from cnnedge.runtime import default_threads

    parts = split_list(text)
    if text is None or text == "" or text == []:
        return sorted({1, default_threads()})
    out = []
    for part in (p.lower() for p in parts):
        if part in ("all", "max"):
            out.append(default_threads())
        else:  # 1,2 or all
            out.append(number(part, "--threads", Range(1, 4096, integer=True, note="or all")))
    if not out:
        raise CnnedgeError("--threads: no thread count given")
    return list(dict.fromkeys(out))


def parse_batch_sizes(text) -> list[int]:
    if text is None:
        return list(BATCH_SIZES)
    out = []
    for part in split_list(text):  # 1,32,256
        out.append(number(part, "--batch-sizes", Range(1, 65536, integer=True)))
    return sorted(set(out) | {1})


def parse_gates(items) -> dict[str, float]:
    """["accuracy=0.92", "speed=0.8"] -> {"accuracy": 0.92, "speed": 0.8}."""
    if isinstance(items, dict):
        items = [f"{k}={v}" for k, v in items.items()]
    gates: dict[str, float] = {}
    for part in split_list(items):
        key, sep, value = part.partition("=")
        key = key.strip().lower()
        if not sep or key not in GATES:
            raise CnnedgeError(
                f"--fail-under expects one of {', '.join(g + '=X' for g in GATES)}, got '{part}'"
            )
        gates[key] = number(value, f"--fail-under {key}", Range(0, 1000))  # finite, >= 0
    return gates
