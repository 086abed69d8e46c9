"""Cycles per instruction for the latency estimate, calibrated on MLPerf Tiny's ResNet-8.

    python -m cnnedge.firmware.calibrate [--tflm-dir DIR]     # writes calibration.json

An emulator counts instructions, not cycles. To state a latency, cnnedge builds the model that
MLPerf Tiny's image-classification benchmark times (ResNet-8 on 32×32×3 CIFAR-10: a 16-filter
stem, three residual stacks of 16, 32 and 64 filters, average pooling, a 10-way dense layer;
random weights, which do not change the work), int8 with int8 input and output, counts its
instructions per inference on each calibrated core, and divides the published cycles (latency ×
clock) by that count. An estimate for another model is then its instruction count × that ratio
at the core's stated clock: it assumes the model spends its time in the same kernels in the same
proportions, and that the published board runs at the cycles-per-instruction of this build.
"""

from __future__ import annotations

import argparse
import datetime
import json
import tempfile
from pathlib import Path

import numpy as np

from cnnedge.errors import CnnedgeError
from cnnedge.firmware.report import CALIBRATION

# Published ResNet-8 latencies (ms) and clocks (MHz): MLPerf Tiny image classification, as the
# issue and docs/microcontrollers.md cite them.
PUBLISHED = {
    "cortex-m4": {
        "ms": 168.0,
        "mhz": 120,
        "source": "MLPerf Tiny image classification (ResNet-8), a Cortex-M4 board at 120 MHz: about 168 ms",
    },
    "cortex-m7": {
        "ms": 47.0,
        "mhz": 280,
        "source": "MLPerf Tiny image classification (ResNet-8), a Cortex-M7 board at 280 MHz: about 47 ms",
    },
}


def resnet8(seed: int = 0):
    """MLPerf Tiny's ResNet-8 (tf_keras, uint8 pixels in, rescaled in the graph)."""
    from cnnedge.backend import keras

    keras.utils.set_random_seed(seed)
    L = keras.layers
    x_in = keras.Input((32, 32, 3))
    x = L.Rescaling(1 / 255.0)(x_in)
    x = L.ReLU()(L.BatchNormalization()(L.Conv2D(16, 3, padding="same")(x)))
    for filters, stride in ((16, 1), (32, 2), (64, 2)):
        y = L.ReLU()(L.BatchNormalization()(L.Conv2D(filters, 3, stride, padding="same")(x)))
        y = L.BatchNormalization()(L.Conv2D(filters, 3, padding="same")(y))
        if stride != 1:
            x = L.Conv2D(filters, 1, stride, padding="same")(x)
        x = L.ReLU()(L.Add()([x, y]))
    x = L.Flatten()(L.AveragePooling2D(8)(x))
    return keras.Model(x_in, L.Dense(10)(x), name="resnet8")


def resnet8_bundle(folder: Path) -> Path:
    """ResNet-8 as a TFLM export folder (fixed-size int8 file + bundle) in ``folder``."""
    from cnnedge import models
    from cnnedge.export import tflm_bundle
    from cnnedge.export.tflite import convert_tflite, tflite_io
    from cnnedge.export.tflm import op_names
    from cnnedge.runtime import tflm as runtime_tflm

    model = resnet8()
    rng = np.random.default_rng(0)
    calib = [rng.integers(0, 256, (1, 32, 32, 3)).astype(np.uint8) for _ in range(32)]
    buf = convert_tflite(model, "int8", calib, channels=3, dynamic=False, size=(32, 32))
    i, o = tflite_io(buf)
    arena = runtime_tflm.measure_arena(buf, "resnet8")
    x = np.clip(np.rint(calib[0] / i["scale"]) + i["zero_point"], -128, 127).astype(np.int8)
    from tflite_micro.python.tflite_micro import runtime as tflm

    it = tflm.Interpreter.from_bytes(buf, arena_size=arena["arena_bytes"])
    it.set_input(x, 0)
    it.invoke()
    meta = {
        "cnnedge_version": "calibration",
        "source_model": "resnet8",
        "channels": 3,
        "class_names": [str(k) for k in range(10)],
        "image_size": [32, 32],
        "input_scale": i["scale"],
        "input_zero_point": i["zero_point"],
        "source": "ptq",
        "macs_per_image": int(models.count_macs(model, (32, 32, 3))),
        "tflm_arena_bytes": arena["arena_bytes"],
    }
    facts = {
        "arena": arena,
        "test_input": x.reshape(-1),
        "test_label": None,
        "test_output": np.array(it.get_output(0)).reshape(-1),
        "ops": op_names(buf),
        "size": [32, 32],
        "input": i,
        "output": o,
    }
    from cnnedge.artifacts import embed_tflite_metadata

    (folder / "model_int8_static.tflite").write_bytes(embed_tflite_metadata(buf, meta))
    tflm_bundle.write_bundle(folder / "tflm", buf, meta, facts)
    return folder


def calibrate(tflm_dir=None, log=print) -> dict:
    """Count ResNet-8's instructions on each published core; write and return calibration.json."""
    from cnnedge.files import atomic_write_json
    from cnnedge.firmware import build_firmware

    out = {}
    with tempfile.TemporaryDirectory(prefix="cnnedge-calibrate-") as tmp:
        folder = resnet8_bundle(Path(tmp))
        for target, pub in PUBLISHED.items():
            r = build_firmware(folder, target, tflm_dir=tflm_dir, parity_images=0, log=log)
            if not r.instructions:
                raise CnnedgeError(f"no instruction count for {target} (the QEMU plugin reported nothing)")
            cycles = pub["ms"] * pub["mhz"] * 1e3
            out[target] = {
                "cycles_per_instruction": round(cycles / r.instructions, 4),
                "resnet8_instructions": r.instructions,
                "resnet8_macs": r.macs_per_image,
                "resnet8_flash_bytes": r.flash["total"],
                "resnet8_ram_bytes": r.ram["total"],
                "resnet8_arena_used_bytes": r.arena_used,
                "published": pub["source"],
                "method": f"instructions × {cycles / r.instructions:.3f} cycles per instruction "
                f"(ResNet-8's published {pub['ms']:g} ms at {pub['mhz']} MHz ÷ its "
                f"{r.instructions:,} counted instructions) at the stated clock",
                "command": "python -m cnnedge.firmware.calibrate",
                "date": datetime.date.today().isoformat(),
                "host_cpu": r.host_cpu,
            }
    atomic_write_json(CALIBRATION, out)
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tflm-dir", default=None)
    args = ap.parse_args(argv)
    print(json.dumps(calibrate(args.tflm_dir), indent=1))


if __name__ == "__main__":
    main()
