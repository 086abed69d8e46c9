"""The artifact table: every model file cnnedge writes or runs, one row per format × precision.

Each row names the file (``model_int8.tflite``), its suffix, where its metadata lives and the
runtimes that execute it (the default first). Export, verify, bench, the demo, the CLI help and
the tests read this table; adding a format is one row here plus one writer in
:mod:`cnnedge.export`, adding a runtime one class in :mod:`cnnedge.runtime` named in the rows it
runs. This module also reads and writes the metadata every exported file carries: a JSON dict
under the key ``"cnnedge"`` (TFLite: an entry of the flatbuffer's ``metadata`` list; ONNX:
``metadata_props``) that says how to feed the model. No TensorFlow is imported here.
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cnnedge.errors import CnnedgeError, one_line
from cnnedge.utils import unknown

METADATA_KEY = "cnnedge"
TFLITE_IDENTIFIER = b"TFL3"
REQUIRED_KEYS = ("format", "precision", "class_names", "channels", "input_dtype")
INPUT_NAME, OUTPUT_NAME = "image", "logits"
LITERT = ("litert", "litert-ref")
ORT = ("onnxruntime", "onnxruntime-cuda", "onnxruntime-tensorrt")
OPENVINO = ("openvino", "openvino-bf16")
STATIC_ONLY = ("tflm",)  # runtimes that need a fixed input shape: the tflm row's file only


@dataclass(frozen=True)
class Artifact:
    """One row of the table. ``filename`` is None for the run's own Keras models (the run
    directory names those: :class:`cnnedge.run.Run`)."""

    key: str
    format: str  # keras | tflite | onnx
    precision: str  # fp32 | fp16 | int8 | qat
    suffix: str
    filename: str | None
    runtimes: tuple[str, ...]  # registry names (cnnedge.runtime), the default first
    source: str  # float | qat | ptq | "qat or ptq"
    description: str


TABLE: tuple[Artifact, ...] = (
    Artifact("keras", "keras", "fp32", ".keras", None, ("keras",), "float", "the run's best float model"),
    Artifact(
        "keras-qat",
        "keras",
        "qat",
        ".h5",
        None,
        ("keras",),
        "qat",
        "the run's QAT model (HDF5: tfmot cannot reload .keras)",
    ),
    Artifact(
        "tflite-fp32", "tflite", "fp32", ".tflite", "model_fp32.tflite", LITERT, "float", "float TFLite"
    ),
    Artifact(
        "tflite-fp16",
        "tflite",
        "fp16",
        ".tflite",
        "model_fp16.tflite",
        LITERT,
        "float",
        "TFLite with fp16 weights",
    ),
    Artifact(
        "tflite-int8",
        "tflite",
        "int8",
        ".tflite",
        "model_int8.tflite",
        (*LITERT, *OPENVINO),
        "qat or ptq",
        "full-integer TFLite from the QAT model (post-training quantization without one)",
    ),
    Artifact(
        "tflite-int8-ptq",
        "tflite",
        "int8",
        ".tflite",
        "model_int8_ptq.tflite",
        LITERT,
        "ptq",
        "post-training int8 of the float model, written beside a QAT int8 to compare",
    ),
    Artifact(
        "onnx-fp32",
        "onnx",
        "fp32",
        ".onnx",
        "model_fp32.onnx",
        (*ORT, *OPENVINO),
        "float",
        "float ONNX (tf2onnx)",
    ),
    Artifact(
        "onnx-int8",
        "onnx",
        "int8",
        ".onnx",
        "model_int8.onnx",
        (*ORT, *OPENVINO),
        "qat or ptq",
        "int8 ONNX converted from the int8 TFLite (bit-exact with it)",
    ),
    Artifact(
        "tflm-int8",
        "tflm",
        "int8",
        ".tflite",
        "model_int8_static.tflite",
        ("tflm", *LITERT),
        "qat or ptq",
        "int8 TFLite with a fixed 1×H×W×C input for TFLite Micro, and the C/C++ bundle "
        "tflm/ (opt-in: --format tflm)",
    ),
)
BY_KEY = {a.key: a for a in TABLE}
METADATA_WHERE = {
    "keras": "the run directory (class names, summary)",
    "tflite": "flatbuffer metadata entry 'cnnedge'",
    "tflm": "flatbuffer metadata entry 'cnnedge'; tflm/model_settings.h",
    "onnx": "metadata_props 'cnnedge'",
}
# --model RUN for the demo and predictions: the edge artifact first
EDGE_PREFERENCE = ("tflite-int8", "tflite-fp16", "tflite-fp32", "onnx-int8", "onnx-fp32")


def edge_order(runtime: str | None = None) -> list[Artifact]:
    """The rows ``--model RUN`` tries, in EDGE_PREFERENCE order, with the rows ``runtime``
    runs moved to the front (stable: the order is kept otherwise); with ``runtime``, the other
    files it runs too (the tflm row's fixed-size file)."""
    rows = [get(k) for k in EDGE_PREFERENCE]
    if runtime:
        rows += [a for a in TABLE if a.filename and a not in rows and runtime in a.runtimes]
        rows.sort(key=lambda a: runtime not in a.runtimes)
    return rows


def get(key: str) -> Artifact:
    if key not in BY_KEY:
        raise unknown("artifact", key, BY_KEY)
    return BY_KEY[key]


def formats() -> list[str]:
    """Exported formats in table order (tflite, onnx)."""
    return list(dict.fromkeys(a.format for a in TABLE if a.filename))


def precisions(fmt: str) -> list[str]:
    return list(dict.fromkeys(a.precision for a in TABLE if a.format == fmt and a.filename))


def exported() -> list[Artifact]:
    return [a for a in TABLE if a.filename]


def suffixes(exported_only: bool = False) -> tuple[str, ...]:
    return tuple(dict.fromkeys(a.suffix for a in TABLE if a.filename or not exported_only))


def lookup(path) -> Artifact:
    """The row of a model file: by its file name, else the first row with its suffix."""
    path = Path(path)
    by_name = [a for a in TABLE if a.filename == path.name]
    by_suffix = [a for a in TABLE if a.suffix == path.suffix.lower()]
    if by_name or by_suffix:
        return (by_name or by_suffix)[0]
    raise CnnedgeError(f"{path}: unknown model type '{path.suffix}'; expected one of {', '.join(suffixes())}")


def runtimes_for(path) -> list[str]:
    """The runtimes that execute ``path`` (every row with its suffix), the default first; those
    that need a fixed input shape (STATIC_ONLY) only for a file that has one."""
    suffix = Path(path).suffix.lower()
    first = lookup(path).runtimes
    rest = [r for a in TABLE if a.suffix == suffix for r in a.runtimes]
    names = list(dict.fromkeys([*first, *rest]))
    return [r for r in names if r not in STATIC_ONLY or is_static(path)]


def is_static(path) -> bool:
    """True for a cnnedge TFLite file with a fixed input size (``--format tflm``)."""
    path = Path(path)
    if path.suffix.lower() != ".tflite" or not path.is_file():
        return path.name == get("tflm-int8").filename
    try:
        return (tflite_metadata(path.read_bytes(), path) or {}).get("dynamic_hw") is False
    except CnnedgeError:
        return False


# ------------------------------------------------------------------------------------ metadata
def check_metadata(meta, path) -> dict:
    """``meta`` if it is complete cnnedge metadata; a CnnedgeError naming ``path`` if it is
    absent (None) or incomplete."""
    if meta is None:
        raise CnnedgeError(f"{path} has no cnnedge metadata (was it written by cnnedge export?)")
    if not isinstance(meta, dict) or any(k not in meta for k in REQUIRED_KEYS):
        raise CnnedgeError(f"{path}: cnnedge metadata is incomplete (need {', '.join(REQUIRED_KEYS)})")
    return meta


def tflite_schema():
    try:
        from ai_edge_litert import schema_py_generated as schema
    except ImportError:  # a TensorFlow-only install has the same generated module
        try:
            from tensorflow.lite.python import schema_py_generated as schema
        except ImportError as e:
            raise CnnedgeError(
                "reading .tflite files needs ai-edge-litert: pip install ai-edge-litert"
            ) from e
    return schema


def tflite_model(buf: bytes, path):
    """(schema module, Model) of TFLite flatbuffer bytes; a CnnedgeError naming ``path`` if not."""
    schema = tflite_schema()
    if len(buf) < 8 or buf[4:8] != TFLITE_IDENTIFIER:
        raise CnnedgeError(f"{path} is not a TFLite model (no TFL3 flatbuffer identifier)")
    try:
        return schema, schema.Model.GetRootAs(buf, 0)
    except Exception as e:  # noqa: BLE001 - any flatbuffer decoding error: corrupt file
        raise CnnedgeError(f"{path} is a corrupt TFLite file: {e}") from e


def tflite_metadata(buf: bytes, path="<bytes>") -> dict | None:
    """The cnnedge metadata dict embedded in TFLite flatbuffer bytes (None if absent)."""
    _, model = tflite_model(buf, path)
    try:
        for i in range(model.MetadataLength()):
            entry = model.Metadata(i)
            if (entry.Name() or b"").decode("utf-8", "replace") != METADATA_KEY:
                continue
            data = model.Buffers(entry.Buffer()).DataAsNumpy()
            if isinstance(data, int):  # an empty buffer
                raise CnnedgeError(f"{path}: cnnedge metadata buffer is empty")
            return json.loads(bytes(data).decode("utf-8"))
    except CnnedgeError:
        raise
    except Exception as e:  # noqa: BLE001 - truncated/corrupt flatbuffer or bad JSON
        raise CnnedgeError(
            f"{path} is a corrupt TFLite file or has unreadable metadata: {one_line(e)}"
        ) from e
    return None


def embed_tflite_metadata(buf: bytes, meta: dict) -> bytes:
    """Return ``buf`` with ``meta`` (JSON) as the flatbuffer metadata entry "cnnedge".

    Uses the generated object API (``ai_edge_litert.schema_py_generated``, the same schema as
    ``tensorflow.lite.tools.flatbuffer_utils``): unpack, append a buffer and a metadata entry
    (replacing an older "cnnedge" entry), pack with the TFL3 identifier.
    """
    import flatbuffers

    schema, _ = tflite_model(buf, "<converted model>")
    obj = schema.ModelT.InitFromPackedBuf(bytearray(buf), 0)
    blob = schema.BufferT()
    blob.data = np.frombuffer(json.dumps(meta, sort_keys=True).encode("utf-8"), dtype=np.uint8)
    obj.buffers = list(obj.buffers or [])
    obj.buffers.append(blob)
    entry = schema.MetadataT()
    entry.name = METADATA_KEY
    entry.buffer = len(obj.buffers) - 1
    obj.metadata = [
        m
        for m in (obj.metadata or [])
        if (m.name.decode() if isinstance(m.name, bytes) else m.name) != METADATA_KEY
    ]
    obj.metadata.append(entry)
    builder = flatbuffers.Builder(len(buf) + 4096)
    builder.Finish(obj.Pack(builder), file_identifier=TFLITE_IDENTIFIER)
    return bytes(builder.Output())


def onnx_metadata(path) -> dict | None:
    """The cnnedge metadata of an ONNX file via onnxruntime (or the onnx package)."""
    props = None
    if importlib.util.find_spec("onnxruntime") is not None:
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.log_severity_level = 3
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        try:
            sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        except Exception as e:  # noqa: BLE001 - onnxruntime raises its own exception types
            raise CnnedgeError(f"{path} is not a valid ONNX model: {one_line(e)}") from e
        props = dict(sess.get_modelmeta().custom_metadata_map)
    elif importlib.util.find_spec("onnx") is not None:
        import onnx

        try:
            model = onnx.load(str(path), load_external_data=False)
        except Exception as e:  # noqa: BLE001 - protobuf DecodeError & co.
            raise CnnedgeError(f"{path} is not a valid ONNX model: {one_line(e)}") from e
        props = {p.key: p.value for p in model.metadata_props}
    else:
        raise CnnedgeError("reading .onnx files needs onnxruntime: pip install onnxruntime")
    if METADATA_KEY not in props:
        return None
    try:
        return json.loads(props[METADATA_KEY])
    except ValueError as e:
        raise CnnedgeError(f"{path}: cnnedge metadata is not valid JSON: {e}") from e


def set_onnx_metadata(proto, meta: dict) -> None:
    """Store ``meta`` in an ONNX ModelProto: the JSON dict plus a few flat keys for tools that
    show ``metadata_props`` (Netron)."""
    flat = {
        METADATA_KEY: json.dumps(meta, sort_keys=True),
        "class_names": json.dumps(meta["class_names"]),
        "precision": meta["precision"],
        "input_layout": meta["input_layout"],
        "pixel_range": json.dumps(meta["pixel_range"]),
        "cnnedge_version": meta["cnnedge_version"],
    }
    keep = [p for p in proto.metadata_props if p.key not in flat]
    del proto.metadata_props[:]
    for p in keep:
        proto.metadata_props.add(key=p.key, value=p.value)
    for k, v in flat.items():
        proto.metadata_props.add(key=k, value=v)
    proto.producer_name = "cnnedge"
    proto.doc_string = (
        f"cnnedge {meta['precision']} {meta['format']} model; input "
        f"'{INPUT_NAME}' NHWC {meta['input_dtype']} pixels 0..255, output "
        f"'{OUTPUT_NAME}' float32 logits"
    )


def _read_tflite(path: Path) -> dict | None:
    return tflite_metadata(path.read_bytes(), path)


_READERS = {"tflite": _read_tflite, "tflm": _read_tflite, "onnx": onnx_metadata}


def read_metadata(path) -> dict:
    """The cnnedge metadata dict of an exported artifact (no TensorFlow needed)."""
    path = Path(path)
    if not path.is_file():
        raise CnnedgeError(f"no model file at {path}")
    reader = _READERS.get(lookup(path).format) if path.suffix.lower() in suffixes(True) else None
    if reader is None:
        raise CnnedgeError(f"{path}: expected a {' or '.join(suffixes(True))} file written by cnnedge export")
    return check_metadata(reader(path), path)
