"""The GMP model family: compact strided-conv CNNs with a global-max-pooling head (timm style).

One file per part: ``_registry`` (names -> builders), ``gmp`` (the family), ``baselines``
(fixed-size Flatten models), ``graph`` (input sizes, params, MACs), ``saving`` (loading),
``objectives`` (the training losses and metrics a saved config may name).

    m = create_model("gmp_s", num_classes=10, channels=1)   # any H×W >= min_input_size(m)
    list_models(); model_help("gmp_s"); summary_dict(m, (28, 28, 1))

Every model takes float32 images holding **raw pixels 0..255** (input "image", shape
(None, None, C) -- or a fixed (H, W, C) for the baselines) and returns **logits** (layer "logits").

Rescaling under QAT: ``keras.layers.Rescaling`` is rejected by tfmot's ``quantize_model``, and a
custom layer would need a QuantizeConfig, annotation and a scope everywhere. Instead the first
layer is a frozen 1×1 ``DepthwiseConv2D`` ("rescale") whose kernel is 1/255 -- a plain layer that
tfmot quantizes out of the box. In the int8 TFLite model the input then gets scale 1.0 /
zero point -128 (int8 = pixel - 128, lossless) and 1/255 is exact as an int8 weight (127 with
scale 1/(255·127)), so the rescale costs one tiny op and no accuracy. The cost: C parameters and
H·W·C MACs per image, both counted below. The kernel is frozen in float training; tfmot's
QuantizeWrapper re-adds wrapped kernels as trainable, so during QAT it may drift slightly from
1/255 -- harmless (a per-channel input scale, BN or the next conv absorbs it, int8 stays exact).
"""

from cnnedge.models import baselines as _baselines  # noqa: F401  (registers the baselines)
from cnnedge.models import dw as _dw  # noqa: F401  (registers the depthwise members)
from cnnedge.models._registry import create_model, list_models, model_help, register_model
from cnnedge.models.gmp import gmp_cnn, gmp_resnet
from cnnedge.models.graph import (
    check_input_size,
    count_macs,
    count_params,
    min_input_size,
    summary_dict,
    total_stride,
)
from cnnedge.models.saving import load_model, quantize_scope

__all__ = [
    "check_input_size",
    "count_macs",
    "count_params",
    "create_model",
    "gmp_cnn",
    "gmp_resnet",
    "list_models",
    "load_model",
    "min_input_size",
    "model_help",
    "quantize_scope",
    "register_model",
    "summary_dict",
    "total_stride",
]
