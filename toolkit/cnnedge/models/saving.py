"""Loading cnnedge models: one loader for float and QAT files."""

from __future__ import annotations

from pathlib import Path

from cnnedge.backend import keras
from cnnedge.errors import CnnedgeError


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
    with quantize_scope():
        try:
            return keras.models.load_model(path, compile=compile)
        except Exception as e:  # noqa: BLE001 - zip/h5py/deserialization errors of a bad file
            if "variables during loading" in str(e):
                raise CnnedgeError(f"cannot load {path}: QAT models must be saved as .h5, not "
                                   f".keras ({str(e).splitlines()[0]})") from e
            raise CnnedgeError(f"cannot load model {path}: {type(e).__name__}: "
                               f"{' '.join(str(e).split())[:200]}") from e
