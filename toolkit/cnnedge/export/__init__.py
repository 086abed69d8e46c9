"""`cnnedge export`: a run (or a .keras/.h5 model) -> TFLite and ONNX artifacts with metadata.

    export("runs/fashion_mnist/exp")                       # every format × precision + parity
    export("runs/fashion_mnist/exp", formats=["onnx"], precisions=["int8"], verify=0)
    export("model.keras", precisions=["int8"], calibration="fashion-mnist")

File names, formats and precisions come from the artifact table (:mod:`cnnedge.artifacts`); each
format has one writer module (:mod:`.tflite`, :mod:`.onnx`). Files are staged in a temporary
folder and renamed into ``<run>/export/`` only when every requested artifact was written, so a
failure leaves nothing partial behind. For a run, the written files then get the same quick
parity check as the CLI (:func:`cnnedge.verify.verify` on ``verify`` test images).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from cnnedge import artifacts, locks
from cnnedge.errors import CnnedgeError
from cnnedge.export import onnx as _onnx
from cnnedge.export import tflite as _tflite
from cnnedge.export import tflm as _tflm
from cnnedge.export.job import Job, resolve
from cnnedge.interrupts import Interrupts
from cnnedge.run import Run

if TYPE_CHECKING:
    from cnnedge.verify import VerifyReport
from cnnedge.utils import split_list, unknown

PRECISIONS = tuple(dict.fromkeys(a.precision for a in artifacts.exported()))  # fp32 fp16 int8
INT8_METHODS = ("tflite", "qdq")
ONNX_WEIGHTS = _onnx.WEIGHTS  # int8 (default) | uint8
WRITERS = {"tflite": _tflite.writers, "onnx": _onnx.writers, "tflm": _tflm.writers}
OPT_IN = ("tflm",)  # written on request only: "all" means every other format
QUICK_VERIFY_IMAGES = 512
STAGE_PREFIX = ".export."  # the staging folder inside the output folder
NO_VNNI_NOTE = (
    "this CPU lacks VNNI, where onnxruntime adds int8-weight products into "
    "saturating int16 sums: model_int8.onnx (int8 weights, right for VNNI CPUs, ARM, "
    "TensorRT, OpenVINO) may differ from model_int8.tflite here; --onnx-weights uint8 "
    "writes one that is exact on this CPU too"
)


@dataclass
class ExportResult:
    """The written files (one dict each: path, format, precision, bytes, source, seconds), the
    output folder, the quick parity report (None when skipped) and notes on the files (one
    line each, e.g. an int8-weight ONNX on an x86 CPU without VNNI). Iterates over the files."""

    artifacts: list[dict]
    out_dir: Path
    verify: VerifyReport | None = None
    verify_error: str | None = None  # why the quick check could not run (files are written)
    notes: list[str] = field(default_factory=list)
    passed: bool = field(init=False)

    def __post_init__(self):
        self.passed = self.verify is None or bool(self.verify.passed)

    def to_dict(self) -> dict:
        return {
            "artifacts": self.artifacts,
            "out_dir": str(self.out_dir),
            "verify": self.verify.to_dict() if self.verify is not None else None,
            "verify_error": self.verify_error,
            "notes": self.notes,
            "passed": self.passed,
        }

    def __iter__(self):
        return iter(self.artifacts)

    def __len__(self):
        return len(self.artifacts)

    def __getitem__(self, i):
        return self.artifacts[i]


def list_formats() -> list[str]:
    return [f for f in artifacts.formats() if f in WRITERS]


def format_precisions(name: str) -> tuple[str, ...]:
    if name not in WRITERS:
        raise _bad("export format", name, list_formats())
    return tuple(artifacts.precisions(name))


def _bad(what, name, valid) -> CnnedgeError:
    return unknown(what, name, [*valid, "all"])


def _names(values, valid: Sequence[str], what: str, opt_in=()) -> list[str]:
    out: list[str] = []
    for part in (p.lower() for p in split_list(values)):
        if part == "all":
            out.extend(v for v in valid if v not in opt_in)
        elif part not in valid:
            raise _bad(what, part, valid)
        else:
            out.append(part)
    out = list(dict.fromkeys(out))
    if not out:
        raise CnnedgeError(f"no {what} given; valid: {', '.join(valid)}, all")
    return out


def export(
    run_or_model,
    *,
    formats: Sequence[str] | str = ("tflite", "onnx"),
    precisions: Sequence[str] | str = PRECISIONS,
    out_dir=None,
    calibration=None,
    opset: int = 17,
    int8_method: str = "tflite",
    calibration_images: int | None = None,
    verify: int = QUICK_VERIFY_IMAGES,
    threads: int = 0,
    onnx_weights: str | None = None,
    image_size=None,
) -> ExportResult:
    """Export a run directory or a .keras/.h5 model (see the module docstring).

    Unsupported format×precision pairs are skipped (ONNX has no fp16); a precision no requested
    format supports is an error.

    Args:
        run_or_model: A run directory (its best and QAT models) or a ``.keras``/``.h5`` file.
        formats: Formats, a list or a comma string; ``all`` is every format but ``tflm`` (the
            fixed-size int8 file for TFLite Micro and its C bundle, which needs the
            tflite-micro package).
        precisions: ``fp32``, ``fp16``, ``int8``, a list or a comma string, or ``all``.
        out_dir: Output folder (default ``<run>/export``, or ``<model>_export`` beside a file).
        calibration: int8 calibration data for a model file: a dataset name or path, or uint8
            images [N, H, W, C] (a run uses its recipe's train split).
        opset: ONNX opset (7 to 21).
        int8_method: The int8 ONNX route: ``tflite`` (from the int8 .tflite, bit-exact with
            it) or ``qdq`` (onnxruntime quantize_static).
        calibration_images: Images drawn from ``calibration`` (default: the model's run's
            ``qat.calibration_images``, else 500; a run directory uses its recipe's).
        verify: Test images of the quick parity check after exporting a run (0: skip).
        threads: Runtime threads of the parity check (0: all cores).
        onnx_weights: The int8 ONNX weights: ``int8`` (symmetric, zero point 0, the default:
            standard QDQ, fast on VNNI CPUs and ARM) or ``uint8`` (+ 128: exact in
            onnxruntime on x86 CPUs without VNNI too; the tflite route only).
        image_size: The fixed input (H, W) or ``"HxW"`` of ``tflm`` (default: the training
            size).

    Returns:
        An :class:`ExportResult`: the files, the parity report and notes.

    Raises:
        CnnedgeError: a bad option, no calibration data for int8, a file that cannot be
            converted or written (nothing is left half-written).
    """
    if onnx_weights is None:
        onnx_weights = ONNX_WEIGHTS[0]
    fmts = _names(formats, list_formats(), "export format", OPT_IN)
    precs = _precisions(precisions, fmts)
    if int8_method not in INT8_METHODS:
        raise unknown("int8_method", int8_method, INT8_METHODS)
    if onnx_weights not in ONNX_WEIGHTS:
        raise unknown("onnx_weights", onnx_weights, ONNX_WEIGHTS)
    if onnx_weights != "int8" and int8_method != "tflite":  # quantize_static writes int8 only
        raise CnnedgeError("onnx_weights uint8 needs int8_method tflite")
    if not 7 <= int(opset) <= 21:
        raise CnnedgeError(f"ONNX opset must be between 7 and 21, got {opset}")
    if int(verify) < 0:
        raise CnnedgeError(f"verify must be >= 0 test images, got {verify}")
    if image_size is not None:
        from cnnedge.recipe import parse_image_size

        image_size = parse_image_size(image_size)
        if image_size == "keep":
            raise CnnedgeError("--format tflm needs a fixed --image-size HxW, not keep")
    if image_size is not None and "tflm" not in fmts:
        raise CnnedgeError(
            "--image-size sets the fixed input of --format tflm; the other formats keep the dynamic H×W input"
        )
    if "tflm" in fmts:
        from cnnedge.runtime import tflm as runtime_tflm

        runtime_tflm.require("--format tflm")
    job = resolve(run_or_model, calibration, opset, int8_method, calibration_images)
    if image_size is not None:
        job.cache["tflm_size"] = list(image_size)
    if "tflm" in fmts:
        _tflm.static_size(job)  # a model with no size recorded fails before any conversion
    job.cache["onnx_weights"] = onnx_weights  # read by the ONNX writer (_onnx.onnx_weights)
    if "int8" in precs and job.calibration is None:
        raise CnnedgeError(
            "int8 export needs calibration data: pass --data <dataset name or "
            "path> (calibration=...) or export a run directory"
        )
    out_dir = _out_dir(job, out_dir)
    with Run.lock_of(out_dir, "cnnedge export"):  # one command at a time writes a run
        results = _write(job, [(f, p) for f in fmts for p in precs if p in format_precisions(f)], out_dir)
    res = ExportResult(results, out_dir, notes=_notes(results, onnx_weights))
    if verify and job.run is not None and Run.is_run(job.run.path):
        from cnnedge.verify import verify as parity

        try:  # the files are in place: a check that cannot run must not lose them
            res.verify = parity(
                job.run.path,
                n=int(verify),
                threads=threads,
                write=False,
                artifacts=[r["path"] for r in results if Path(r["path"]).is_file()],
            )
            res.passed = bool(res.verify.passed)
        except CnnedgeError as e:
            res.verify_error = str(e)
    return res


def _precisions(precisions, fmts: list[str]) -> list[str]:
    """The precisions asked for; every one must be one some format writes, except under "all"
    (the default), which keeps those the formats have (tflm alone: int8)."""
    precs = _names(precisions, PRECISIONS, "precision")
    if tuple(precisions) == PRECISIONS or "all" in [x.lower() for x in split_list(precisions)]:
        precs = [p for p in precs if any(p in format_precisions(f) for f in fmts)]
    for p in precs:
        if not any(p in format_precisions(f) for f in fmts):
            raise CnnedgeError(
                f"precision {p} is not supported by {', '.join(fmts)}; "
                + "; ".join(f"{f}: {', '.join(format_precisions(f))}" for f in fmts)
            )
    return precs


def _notes(results: list[dict], onnx_weights: str) -> list[str]:
    """Notes on the written files: an int8-weight ONNX on an x86 CPU without VNNI."""
    from cnnedge.verify import x86_without_vnni

    onnx_int8 = any(r["format"] == "onnx" and r["precision"] == "int8" for r in results)
    return [NO_VNNI_NOTE] if onnx_weights != "uint8" and onnx_int8 and x86_without_vnni() else []


def _out_dir(job: Job, out_dir) -> Path:
    if out_dir:
        return Path(out_dir)
    if job.run is not None:
        return job.run.export_dir
    return job.float_path.parent / f"{job.float_path.stem}_export"


def _move(src: Path, dest: Path) -> None:
    """Rename ``src`` to ``dest``. A folder over an existing one: each written file replaces
    its namesake there, files the user added to it stay."""
    if src.is_dir() and dest.is_dir():
        for f in sorted(src.iterdir()):
            f.replace(dest / f.name)
        return
    src.replace(dest)


def _write(job: Job, plan, out_dir: Path) -> list[dict]:
    """Write every (format, precision) of ``plan`` into a staging folder, then move into place."""
    created_dir = not out_dir.exists()
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        clear_stale(out_dir)
        stage = Path(tempfile.mkdtemp(prefix=STAGE_PREFIX, dir=out_dir))
        held = locks.hold(stage)  # while this export runs, its staging folder is not stale
    except OSError as e:  # before any conversion work: a read-only or missing folder
        raise CnnedgeError(f"cannot write to {out_dir}: {e.strerror or e}") from e
    results = []
    try:
        with Interrupts() as ctrl_c:
            _stage_all(job, plan, stage, out_dir, results, ctrl_c)
            for r in results:  # everything written: move into place
                _move(Path(r.pop("_tmp")), r["path"])
                r["path"] = str(r["path"])
    except BaseException as e:
        shutil.rmtree(stage, ignore_errors=True)
        if created_dir:
            with contextlib.suppress(OSError):
                out_dir.rmdir()
        if isinstance(e, OSError):  # a full disk, a folder made read-only meanwhile
            raise CnnedgeError(f"cannot write to {out_dir}: {e.strerror or e}; nothing was written") from e
        raise
    finally:
        if held is not None:
            os.close(held)
    shutil.rmtree(stage, ignore_errors=True)
    return results


def _stage_all(job: Job, plan, stage: Path, out_dir: Path, results: list, ctrl_c) -> None:
    """Run every writer of ``plan`` into ``stage``, one result row per file or folder."""
    for f, p in plan:
        for row, write in WRITERS[f](job, p):
            t0 = time.time()
            tmp = stage / row.filename
            meta = write(tmp)
            ctrl_c.check()  # converters (tf2onnx) swallow a Ctrl-C in their bare excepts
            results.append(
                {
                    "path": out_dir / row.filename,
                    "format": f,
                    "precision": p,
                    "bytes": tmp.stat().st_size,
                    "source": meta["source"],
                    "seconds": round(time.time() - t0, 2),
                    "_tmp": tmp,
                }
            )
            if meta.get("tflm_arena_bytes"):
                results[-1]["arena_bytes"] = meta["tflm_arena_bytes"]
            for extra in meta.get("_extra", ()):  # a folder beside the file (tflm/)
                files = [q for q in (stage / extra).rglob("*") if q.is_file()]
                results.append(
                    {
                        "path": out_dir / extra,
                        "format": f,
                        "precision": p,
                        "bytes": sum(q.stat().st_size for q in files),
                        "source": meta["source"],
                        "seconds": 0.0,
                        "_tmp": stage / extra,
                    }
                )


def clear_stale(out_dir: Path) -> None:
    """Remove the staging folders that exports killed before they finished left in
    ``out_dir``; those of exports still running (locked) stay."""
    for stale in out_dir.glob(f"{STAGE_PREFIX}*"):
        if not locks.held(stale):
            shutil.rmtree(stale, ignore_errors=True)
