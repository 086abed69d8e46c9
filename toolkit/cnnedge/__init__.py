"""cnnedge: compact strided-conv GMP CNNs from data to device.

Pipeline modules, in order: ``data`` -> ``models`` -> ``run`` -> ``quantize`` -> ``train`` ->
``runtime`` -> ``verify`` -> ``export`` -> ``bench`` -> ``cli`` / ``edge_demo`` (docs/layout.md).
Importing ``cnnedge`` is cheap; TensorFlow is imported lazily
through :mod:`cnnedge.backend`, which applies the Keras-2 (``tf_keras``) policy first.
"""

__version__ = "0.1.0"

from cnnedge.errors import CnnedgeError  # noqa: E402

__all__ = ["CnnedgeError", "__version__"]
