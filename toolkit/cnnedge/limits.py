"""Memory bounds checked before work starts: the memory available now and what an input size
costs, so that a size that cannot fit is refused with its estimate (one line, exit 2) instead of
the process being killed by the kernel minutes later.

The estimates are lower bounds (the input buffers alone, or the least a tensor arena holds), so
a size refused here could never have run; one that passes may still need more.
"""

from __future__ import annotations

import os
from pathlib import Path

from cnnedge import imagefile
from cnnedge.errors import CnnedgeError

BYTES_PER_INPUT_VALUE = 5  # each input value as uint8 pixels and as their float32 copy


def available_memory() -> int | None:
    """Bytes of memory available now (MemAvailable, at most a cgroup's limit); None if unknown."""
    avail = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    if avail is None:
        try:
            avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (AttributeError, ValueError, OSError):
            pass
    try:  # a container's limit (cgroup v2)
        raw = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if raw.isdigit():
            avail = int(raw) if avail is None else min(avail, int(raw))
    except OSError:
        pass
    return avail


def gb(n: float) -> str:
    return f"{n / 1e9:,.1f} GB" if n >= 1e8 else f"{n / 1e6:,.1f} MB"


def check_input_size(
    size, *, batch: int = 1, channels: int = 1, what: str = "image size", hint: str = "choose a smaller size"
) -> None:
    """Refuse an input size (H, W) with more pixels than one decoded image may have
    (:func:`cnnedge.imagefile.max_pixels`), or whose ``batch`` × H × W × ``channels`` input
    buffers alone exceed the available memory; the message gives the estimate."""
    h, w = (int(v) for v in size)
    need = batch * h * w * channels * BYTES_PER_INPUT_VALUE
    images = "one image" if batch == 1 else f"a batch of {batch} images"
    estimate = (
        f"{what} {h}x{w}".strip() + f": {imagefile.megapixels(h * w)} per image; "
        f"{images} needs about "
        f"{gb(need)} for its input alone (uint8 pixels and their float32 copy)"
    )
    limit = imagefile.max_pixels()
    if h * w > limit:
        raise CnnedgeError(
            f"{estimate}, and one image may have at most "
            f"{imagefile.megapixels(limit)} ({imagefile.MAX_PIXELS_ENV} raises "
            f"it); {hint}"
        )
    avail = available_memory()
    if avail is not None and need > avail:
        raise CnnedgeError(f"{estimate}, more than the {gb(avail)} of memory available; {hint}")
