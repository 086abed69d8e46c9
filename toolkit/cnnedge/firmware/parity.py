"""On-device parity: the same int8 test images through the firmware and through LiteRT.

The images (a seeded, class-stratified sample of the evaluation split, at the bundle's input
size) are quantized on the host exactly as the runtimes do, written as one int8 record each, and
read by the firmware through semihosting; its int8 outputs come back the same way. LiteRT runs
the same fixed-size ``.tflite`` on the same int8 inputs. The row: top-1 agreement, the largest
output difference in quantization steps, and each side's accuracy on the labels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cnnedge.errors import CnnedgeError

IMAGE_FILE = "images.bin"
TOLERANCE = 1  # output steps: CMSIS-NN may round one step differently from the reference


def sample(meta: dict, n: int, run=None, dataset: str | None = None):
    """(uint8 images [N,H,W,C] at the bundle's size, labels [N]): ``n`` stratified test images
    of the run, else of ``dataset``."""
    from cnnedge.run import test_images

    h, w = meta["image_size"]
    if run is not None:
        images, labels, _ = run.test_images(n)
    elif dataset:
        from cnnedge.data import open_dataset

        src = open_dataset(dataset, image_size=(h, w), channels=int(meta["channels"]))
        images, labels, _ = test_images(src, n)
    else:
        raise CnnedgeError(
            "on-device parity needs test images: give a run, or --data with the "
            "model's dataset (or --parity 0)"
        )
    if images.shape[1:3] != (h, w):
        from cnnedge.preprocess import resize

        images = np.stack([resize(x, (h, w)) for x in images])
    if images.shape[-1] != int(meta["channels"]):
        raise CnnedgeError(
            f"the test images have {images.shape[-1]} channel(s), the model takes {meta['channels']}"
        )
    return images, labels


def quantize(images: np.ndarray, meta: dict) -> np.ndarray:
    """uint8 pixels -> the int8 input (round(pixel / scale) + zero point, clipped)."""
    q = np.rint(images.astype(np.float32) / float(meta["input_scale"] or 1.0))
    return np.clip(q + int(meta["input_zero_point"] or 0), -128, 127).astype(np.int8)


def write_images(x: np.ndarray, folder: Path) -> Path:
    path = folder / IMAGE_FILE
    path.write_bytes(np.ascontiguousarray(x).tobytes())
    return path


def read_outputs(folder: Path, n: int, classes: int) -> np.ndarray:
    path = folder / (IMAGE_FILE + ".out")
    data = np.frombuffer(path.read_bytes(), np.int8) if path.is_file() else np.zeros(0, np.int8)
    if data.size != n * classes:
        raise CnnedgeError(f"the firmware wrote {data.size // max(classes, 1)} of {n} outputs to {path}")
    return data.reshape(n, classes)


def litert(tflite: Path, x: np.ndarray) -> np.ndarray:
    """int8 outputs [N, K] of LiteRT's reference kernels on the fixed-size file."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    it = Interpreter(
        model_path=str(tflite), num_threads=1, experimental_op_resolver_type=OpResolverType.BUILTIN_REF
    )
    it.allocate_tensors()
    i, o = it.get_input_details()[0], it.get_output_details()[0]
    out = []
    for img in x:
        it.set_tensor(i["index"], img[None])
        it.invoke()
        out.append(it.get_tensor(o["index"]).reshape(-1).copy())
    return np.stack(out)


def compare(device: np.ndarray, host: np.ndarray, labels: np.ndarray) -> dict:
    """The parity row of ``device`` (firmware) vs ``host`` (LiteRT) int8 outputs. A flip where
    LiteRT's own output for the firmware's class is within one step of its top output is a
    near-tie that one step of rounding decides: counted, but it does not fail the row."""
    top_d, top_h = device.argmax(1), host.argmax(1)
    steps = int(np.abs(device.astype(np.int16) - host.astype(np.int16)).max(initial=0))
    agree = float((top_d == top_h).mean())
    flips = np.flatnonzero(top_d != top_h)
    h = host.astype(np.int16)
    near = int(sum(h[i].max() - h[i, top_d[i]] <= TOLERANCE for i in flips))
    return {
        "images": int(len(device)),
        "flips": int(len(flips)),
        "flips_near_tie": near,
        "passed": steps <= TOLERANCE and near == len(flips),
        "top1_agreement": agree,
        "max_step_diff": steps,
        "within_tolerance": steps <= TOLERANCE,
        "accuracy_device": float((top_d == labels).mean()),
        "accuracy_litert": float((top_h == labels).mean()),
    }
