"""Loading cnnedge models: one loader for float and QAT files, that never runs a file's code.

A model file's config names the classes to build; Keras would rebuild a ``Lambda`` layer (or an
arbitrary registered object) from code stored in the file. Before anything is deserialised, the
config is read as JSON and every ``class_name`` in it must be a Keras built-in (layer,
initializer, regularizer, constraint, loss, metric, optimizer, schedule), one of tfmot's
quantization wrappers or one of cnnedge's registered classes; ``Lambda`` and ``TFOpLambda``
never are. ``.keras`` files also load with ``safe_mode=True``.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

from cnnedge.backend import keras
from cnnedge.errors import CnnedgeError
from cnnedge.models import objectives  # noqa: F401 (registers the classes a config may name)


def quantize_scope():
    """Context manager for loading QAT models (tfmot's scope; the family has no custom layers)."""
    from cnnedge.backend import get_tfmot

    return get_tfmot().quantization.keras.quantize_scope()


def load_model(path, compile: bool = False):
    """Load a model written by cnnedge: float (.keras/.h5) or QAT (.h5: tfmot 0.8.1 cannot
    reload its quantizer variables from the .keras format). Any failure is one CnnedgeError
    naming the file."""
    path = Path(path)
    if not path.exists():
        raise CnnedgeError(f"no model file at {path}")
    check_no_code(path)
    with quantize_scope():
        try:
            if _is_hdf5(path):
                return keras.models.load_model(path, compile=compile)
            return keras.models.load_model(path, compile=compile, safe_mode=True)
        except Exception as e:  # noqa: BLE001 - zip/h5py/deserialization errors of a bad file
            if "variables during loading" in str(e):
                raise CnnedgeError(
                    f"cannot load {path}: QAT models must be saved as .h5, not "
                    f".keras ({str(e).splitlines()[0]})"
                ) from e
            raise CnnedgeError(
                f"cannot load model {path}: {type(e).__name__}: {' '.join(str(e).split())[:200]}"
            ) from e


_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_CODE_LAYERS = {"Lambda", "TFOpLambda", "SlicingOpLambda"}  # they run code stored in the file


def _is_hdf5(path: Path) -> bool:
    with open(path, "rb") as f:  # by content: an HDF5 file renamed .keras is still HDF5
        return f.read(8) == _HDF5_MAGIC


def _allowed_classes() -> set[str]:
    names = {"Functional", "Sequential", "Model"}
    for module in (
        keras.layers,
        keras.initializers,
        keras.regularizers,
        keras.constraints,
        keras.losses,
        keras.metrics,
        keras.optimizers,
        keras.optimizers.schedules,
    ):
        names |= {n for n, o in vars(module).items() if isinstance(o, type)}
    with quantize_scope() as scope:
        for objects in scope.custom_objects:
            names |= set(objects)
    # cnnedge's own registered classes (the distillation loss and metric of a training config)
    names |= {k.split(">", 1)[1] for k in keras.utils.get_custom_objects() if k.startswith("cnnedge>")}
    return names - _CODE_LAYERS


def _model_config(path: Path) -> dict:
    """The model config of a .h5/.keras file, read as JSON without building anything."""
    try:
        if _is_hdf5(path):
            import h5py

            with h5py.File(path, "r") as f:
                raw = f.attrs.get("model_config")
            if raw is None:
                raise CnnedgeError(
                    f"cannot load model {path}: an HDF5 file without a model config (weights only?)"
                )
        elif zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                raw = z.read("config.json")
        else:
            raise CnnedgeError(f"cannot load model {path}: neither a .keras (zip) nor an HDF5 model file")
        return json.loads(raw.decode() if isinstance(raw, bytes) else raw)
    except CnnedgeError:
        raise
    except Exception as e:  # noqa: BLE001 - truncated zip/HDF5, bad JSON, missing member
        raise CnnedgeError(
            f"cannot load model {path}: {type(e).__name__}: {' '.join(str(e).split())[:200]}"
        ) from e


def _keras_version(path: Path) -> str | None:
    """The Keras version a file was saved by, from its metadata (None where it says none)."""
    try:
        if _is_hdf5(path):
            import h5py

            with h5py.File(path, "r") as f:
                v = f.attrs.get("keras_version")
        else:
            with zipfile.ZipFile(path) as z:
                v = json.loads(z.read("metadata.json")).get("keras_version")
    except Exception:  # noqa: BLE001 - no metadata: judged by its config alone
        return None
    return v.decode() if isinstance(v, bytes) else (str(v) if v else None)


def check_no_code(path) -> None:
    """Refuse a model file whose config names anything but built-in, code-free classes."""
    path = Path(path)
    allowed = _allowed_classes()
    config = _model_config(path)
    version = _keras_version(path)
    if version and version.split(".")[0] not in ("2",):
        # Keras 3 configs name classes (DTypePolicy, __keras_tensor__) tf-keras cannot build
        raise CnnedgeError(
            f"cannot load {path}: it was saved by Keras {version}; cnnedge reads Keras 2 "
            f"(tf-keras) model files, which QAT needs: rebuild the model with tf_keras and save "
            f"it there, or train it with cnnedge (model.weights takes a cnnedge checkpoint)"
        )
    stack = [config]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            name = node.get("class_name")
            if isinstance(name, str) and name not in allowed:
                layer = (
                    (node.get("config") or {}).get("name") if isinstance(node.get("config"), dict) else None
                )
                raise CnnedgeError(
                    f"refusing to load {path}: it names {name}"
                    + (f" (layer '{layer}')" if layer else "")
                    + ", which is not a built-in Keras layer; cnnedge never runs code stored in a "
                    "model file"
                )
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
