"""TFLite Micro as a runtime (``tflm``) and the tensor arena it really needs.

    r = runtime.load("export/model_int8_static.tflite", runtime="tflm")
    measure_arena(Path("model_int8_static.tflite").read_bytes())["arena_bytes"]

The ``tflite-micro`` package (extra ``mcu``) runs TFLM's own interpreter with its x86 reference
kernels: the arithmetic of a microcontroller build, not its speed. TFLM plans tensors once for a
static input shape, so it runs the fixed-size file of ``cnnedge export --format tflm`` (batch 1;
a batch is run image by image). :func:`measure_arena` bisects ``arena_size`` down to the smallest
arena TFLM allocates and keeps TFLM's own allocation report.
"""

from __future__ import annotations

import importlib.util
import re

import numpy as np

from cnnedge import artifacts
from cnnedge.artifacts import check_metadata, one_line
from cnnedge.errors import CnnedgeError
from cnnedge.runtime._registry import register_runtime
from cnnedge.runtime.base import Runner
from cnnedge.utils import captured_stderr

INSTALL = "pip install 'cnnedge[mcu]' (the tflite-micro package)"
ARENA_ALIGN = 16  # TFLM aligns arena buffers to 16 bytes; sizes are reported in these steps
ARENA_LIMIT = 64 << 20  # no microcontroller has more; a model that needs more is refused
_MISSING_OP = re.compile(r"Didn't find op for builtin opcode '([A-Z0-9_]+)'")


def check() -> tuple[bool, str]:
    if importlib.util.find_spec("tflite_micro") is None:
        return False, f"not available: {INSTALL}"
    return True, "ok"


def require(what: str = "TFLite Micro") -> None:
    ok, why = check()
    if not ok:
        raise CnnedgeError(f"{what} needs tflite-micro: {INSTALL}")


def static_shape(buf: bytes, path) -> list[int]:
    """The fixed input shape [1, H, W, C] of TFLite bytes; a CnnedgeError for a dynamic one."""
    _, model = artifacts.tflite_model(buf, path)
    g = model.Subgraphs(0)
    t = g.Tensors(g.Inputs(0))
    sig = t.ShapeSignatureAsNumpy() if t.ShapeSignatureLength() else t.ShapeAsNumpy()
    shape = [int(v) for v in t.ShapeAsNumpy()]
    if any(int(v) < 0 for v in np.atleast_1d(sig)) or len(shape) != 4 or shape[0] != 1:
        raise CnnedgeError(
            f"{path} has a dynamic input shape {list(np.atleast_1d(sig))}; TFLite "
            f"Micro needs a fixed 1×H×W×C one: cnnedge export RUN --format tflm "
            f"[--image-size HxW]"
        )
    return shape


def _open(buf: bytes, arena: int):
    """A TFLM interpreter with ``arena`` bytes, or (None, what TFLM printed)."""
    from tflite_micro.python.tflite_micro import runtime as tflm

    with captured_stderr() as log:
        try:
            return tflm.Interpreter.from_bytes(buf, arena_size=int(arena)), ""
        except RuntimeError:
            pass
    return None, log[0] if log else ""


def _refuse(log: str, path, limit: int = ARENA_LIMIT) -> CnnedgeError:
    op = _MISSING_OP.search(log)
    if op:
        return CnnedgeError(
            f"{path}: TFLite Micro has no kernel for op {op.group(1)}; change the "
            f"model (cnnedge models lists the members that use supported ops)"
        )
    lines = [ln for ln in log.splitlines() if ln.strip()]
    return CnnedgeError(
        f"{path}: TFLite Micro cannot allocate this model in {limit:,} bytes: "
        f"{one_line(lines[-1] if lines else 'no reason given')}"
    )


def measure_arena(buf: bytes, path="<model>", limit: int = ARENA_LIMIT) -> dict:
    """The smallest tensor arena TFLM allocates ``buf`` in (bisection over ``arena_size`` in
    16-byte steps; the size found runs one inference) and TFLM's allocation report at that size:
    {"arena_bytes", "allocations": {what: bytes}, "report": text}."""
    require()
    static_shape(buf, path)
    it, log = _open(buf, limit)
    if it is None:
        raise _refuse(log, path, limit)
    lo, hi = 0, limit  # lo fails (or is 0), hi allocates
    while hi - lo > ARENA_ALIGN:
        mid = (lo + hi) // 2 // ARENA_ALIGN * ARENA_ALIGN
        if mid <= lo:
            break
        ok, _ = _open(buf, mid)
        lo, hi = (lo, mid) if ok is not None else (mid, hi)
    it, log = _open(buf, hi)
    try:
        d = it.get_input_details(0)
        it.set_input(np.zeros(d["shape"], d["dtype"]), 0)
        it.invoke()
    except (AttributeError, RuntimeError) as e:  # it is None, or the inference failed
        raise CnnedgeError(
            f"{path}: TFLite Micro cannot run this model in {hi:,} bytes: {one_line(log or e)}"
        ) from e
    with captured_stderr() as log:
        it.print_allocations()
    report = "\n".join(
        ln.replace("[RecordingMicroAllocator] ", "") for ln in log[0].splitlines() if ln.strip()
    )
    allocations = {m.group(1): int(m.group(2)) for m in re.finditer(r"'([^']+)' used (\d+) bytes", report)}
    for part in ("total", "head", "tail"):
        m = re.search(rf"Arena allocation {part} (\d+) bytes", report)
        if m:
            allocations[f"arena {part}"] = int(m.group(1))
    return {"arena_bytes": int(hi), "allocations": allocations, "report": report}


@register_runtime(
    "tflm",
    check=lambda: check(),  # looked up when called (tests replace it)
    help="TFLite Micro interpreter (x86 reference kernels, batch 1, "
    "single-threaded) for the fixed-size int8 file of --format tflm",
)
class TFLMRunner(Runner):
    """The fixed-size int8 file on TFLM's interpreter, in the arena its metadata names."""

    package = "tflite_micro"

    def __init__(self, path, *, threads: int, arena_size: int | None = None, **opts):
        super().__init__(path, threads=1)  # TFLM is single-threaded
        buf = self.path.read_bytes()
        self.metadata = check_metadata(artifacts.tflite_metadata(buf, self.path), self.path)
        shape = static_shape(buf, self.path)
        self.arena_bytes = int(arena_size or self.metadata.get("tflm_arena_bytes") or 0) or ARENA_LIMIT
        self._it, log = _open(buf, self.arena_bytes)
        if self._it is None:
            raise _refuse(log, self.path)
        i, o = self._it.get_input_details(0), self._it.get_output_details(0)
        self.input_details = {
            "name": artifacts.INPUT_NAME,
            "dtype": np.dtype(i["dtype"]).name,
            "shape": shape,
            **_quant(i),
        }
        self.output_details = {
            "name": artifacts.OUTPUT_NAME,
            "dtype": np.dtype(o["dtype"]).name,
            "shape": [int(v) for v in o["shape"]],
            **_quant(o),
        }
        if self.input_details["dtype"] != self.metadata["input_dtype"]:
            raise CnnedgeError(
                f"{self.path}: metadata says input {self.metadata['input_dtype']}"
                f" but the model takes {self.input_details['dtype']}"
            )

    @property
    def providers(self) -> list[str]:
        """Bench's providers column: the kernels that ran (not a microcontroller's timing)."""
        return ["x86 reference kernels"]

    def run_prepared(self, x: np.ndarray) -> np.ndarray:
        out = []
        for one in x:  # TFLM plans for batch 1 only
            self._it.set_input(one[None], 0)
            self._it.invoke()
            out.append(np.array(self._it.get_output(0)))
        return np.concatenate(out)


def _quant(d: dict) -> dict:
    q = d.get("quantization_parameters") or {}
    scales, zps = q.get("scales"), q.get("zero_points")
    if scales is None or not len(scales):
        return {"scale": None, "zero_point": 0}
    return {"scale": float(scales[0]), "zero_point": int(zps[0])}
