"""Edge demo: classify a camera, video, image or stream with an exported cnnedge model.

    python -m edge_demo clip.mp4 --model runs/fashion_mnist/exp --headless --out demo.mp4
    cnnedge demo 0 --model runs/fashion_mnist/exp/export/model_int8.tflite

Runtime-only: numpy, OpenCV and ai_edge_litert (or onnxruntime); TensorFlow is never imported.
See edge_demo/README.md. Importing this package is cheap (OpenCV loads when the demo runs).
"""

from edge_demo.app import DemoConfig, run_demo
from edge_demo.output import format_summary

__all__ = ["DemoConfig", "format_summary", "run_demo"]
