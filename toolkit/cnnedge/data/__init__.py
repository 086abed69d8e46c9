"""Streaming data layer: every dataset is read from its files through ``tf.data``.

>>> from cnnedge import data
>>> src = data.open_dataset("fashion-mnist", val_fraction=0.1)
>>> ds = src.pipeline("train", batch_size=128, shuffle=True, augment=data.build_augment(["flip"]))

Images come out as uint8 NHWC, labels as int32; nothing is normalised. Formats: IDX
(Fashion-MNIST), CIFAR-10 binary and python batches, image folders, and packed TFRecords
(:func:`pack`). Bad input raises :class:`cnnedge.errors.CnnedgeError` with a one-line message;
wrap your own iteration in ``with source.guard(split):`` to get the same for decoding errors.
"""

from cnnedge.data.augment import build_augment, compose, pad_and_crop, random_flip, random_translate
from cnnedge.data.base import DatasetInfo, Source
from cnnedge.data.records import pack
from cnnedge.data.resolve import open_dataset
from cnnedge.data.tools import benchmark, check, describe, preview

__all__ = [
    "DatasetInfo",
    "Source",
    "benchmark",
    "build_augment",
    "check",
    "compose",
    "describe",
    "open_dataset",
    "pack",
    "pad_and_crop",
    "preview",
    "random_flip",
    "random_translate",
]
