"""What a firmware is built from: the TFLM bundle, its fixed-size ``.tflite`` and metadata, the
run (for test images) and where the results go.

A run directory or its export folder gives its ``tflm/`` bundle; a bundle folder is taken as it
is; a ``.keras`` model or a shipped checkpoint's name is exported to TFLM first
(``<out>/export``). A run without a bundle is exported too (``cnnedge export RUN --format
tflm``), so one command goes from a trained model to firmware.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cnnedge import artifacts, weights
from cnnedge.errors import CnnedgeError
from cnnedge.run import Run

BUNDLE = "tflm"
STATIC = "model_int8_static.tflite"
DEFAULT_OUT = "firmware"


@dataclass
class Source:
    name: str
    bundle: Path
    tflite: Path
    meta: dict
    out: Path
    run: Run | None = None
    dataset: str | None = None


def _is_bundle(p: Path) -> bool:
    return (p / "main.cc").is_file() and (p / "model_data.cc").is_file()


def _export(model, export_dir: Path, log) -> None:
    from cnnedge.export import export

    if log:
        log(f"exporting {model} to TFLite Micro in {export_dir}")
    export(model, formats="tflm", precisions="int8", out_dir=export_dir, verify=0)


def resolve_source(source, out=None, log=None) -> Source:
    """The :class:`Source` of a run, export folder, bundle, model file or checkpoint name."""
    path = Path(str(source)).expanduser()
    run = dataset = None
    if path.is_dir() and _is_bundle(path):
        bundle = path
    elif path.is_dir() and _is_bundle(path / BUNDLE):
        bundle = path / BUNDLE
    elif path.is_dir() and Run.is_run(path):
        bundle = Run(path).export_dir / BUNDLE
        if not _is_bundle(bundle):
            _export(path, bundle.parent, log)
        out = out or path / DEFAULT_OUT
    elif path.is_file() or (not path.exists() and weights.is_reference(str(source))):
        ref = weights.reference_of(path) if path.is_file() else str(source)
        dataset = weights.info(ref).get("dataset") if ref else None
        out = Path(out or Path(DEFAULT_OUT) / (ref or path.stem))
        bundle = out / "export" / BUNDLE
        model = path if path.is_file() else weights.path(str(source))
        if not _is_bundle(bundle) or not _exported_from(bundle.parent / STATIC, model):
            _export(str(source), bundle.parent, log)
    elif path.is_dir():
        raise CnnedgeError(
            f"{path}: no TFLM bundle (main.cc, model_data.cc) and not a run; "
            f"export one: cnnedge export RUN --format tflm"
        )
    else:
        close = weights.names()
        raise CnnedgeError(
            f"no run, bundle, model file or reference checkpoint at {source} "
            f"(checkpoints: {', '.join(close)})"
        )
    tflite = bundle.parent / STATIC
    if not tflite.is_file():
        raise CnnedgeError(
            f"{tflite}: missing beside the bundle {bundle} (the bundle's model, "
            f"needed for the parity check); export again with --format tflm"
        )
    meta = artifacts.tflite_metadata(tflite.read_bytes(), tflite) or {}
    if "input_scale" not in meta or "image_size" not in meta:
        raise CnnedgeError(f"{tflite}: no cnnedge metadata (input quantization, size)")
    if run is None:
        run = _run_of(bundle)
    # absolute: the builds and runs happen in other working directories
    return Source(
        name=path.name or str(source),
        bundle=bundle.absolute(),
        tflite=tflite.absolute(),
        meta=meta,
        out=Path(out or _default_out(bundle)).absolute(),
        run=run,
        dataset=dataset,
    )


def _exported_from(tflite: Path, model: Path) -> bool:
    """Whether ``tflite`` was exported from ``model`` as it is now (same file, not older)."""
    try:
        meta = artifacts.tflite_metadata(tflite.read_bytes(), tflite) or {}
        same = Path(meta.get("source_model") or "").resolve() == model.resolve()
        return same and tflite.stat().st_mtime >= model.stat().st_mtime
    except (OSError, CnnedgeError):
        return False


def _run_of(bundle: Path) -> Run | None:
    """The run a bundle in ``<run>/export/tflm`` belongs to."""
    top = bundle.parent.parent
    return Run(top) if bundle.parent.name == Run.EXPORT and Run.is_run(top) else None


def _default_out(bundle: Path) -> Path:
    run = _run_of(bundle)
    return run.path / DEFAULT_OUT if run is not None else bundle.parent / DEFAULT_OUT
