"""The candidates a tune searches: GMP family member × width multiplier × input size × head
(global max, average or both) × colour (colour photos as they are or as grey).

Every candidate is a model the registry builds (``create_model(member, width=…, pool=…)``) at
an input size the data is resized to; GMP models take any size ≥ their total stride, so the size
is a free choice. The defaults follow the data: small grey images (Fashion-MNIST-like) at their
own size, colour photos at 32, 48 and 64 pixels in colour (``colors="rgb,grey"`` adds each as a
one-channel grey model: a third of the input tensor and of the first layer's MACs); the members
that reach good accuracy under 100k parameters at full width and half width, with the global
max head. A candidate at the shipped checkpoint's member and width starts from that checkpoint
(as ``train --data`` does; a grey one with its first filters summed over RGB).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from cnnedge.errors import CnnedgeError
from cnnedge.numbers import Range

GREY_MEMBERS = ("gmp_xs", "gmp_32_64_128", "gmp_s")
RGB_MEMBERS = ("gmp_xs", "gmp_32_64_128", "gmp_s", "gmp_dw_c", "gmp_dw_a")
WIDTHS = (0.5, 1.0)
POOLS = ("max", "avg", "concat")  # concat: max and average side by side (the gmp_dw members)


@dataclass(frozen=True)
class Candidate:
    model: str
    width: float
    size: int  # square input side
    pool: str = "max"
    grey: bool = False  # colour data converted to one grey channel (recipe data.channels=1)
    kernel: int = 3  # the depthwise kernel of the gmp_dw members

    @property
    def id(self) -> str:
        k = f"-k{self.kernel}" if self.kernel != 3 else ""
        return f"{self.model}-w{self.width:g}-{self.size}px-{self.pool}{k}" + ("-grey" if self.grey else "")

    def kwargs(self) -> dict:
        """The builder options of the candidate's model (recipe model.kwargs)."""
        return {
            "width": self.width,
            "pool": self.pool,
            **({"kernel": self.kernel} if self.kernel != 3 else {}),
        }

    def channels(self, data_channels: int) -> int:
        """The model's input channels on data of ``data_channels``."""
        return 1 if self.grey else int(data_channels)

    def to_dict(self) -> dict:
        return {"id": self.id, **asdict(self)}


def _numbers(values, flag: str, cast, rng=None) -> list:
    from cnnedge.numbers import Range, number
    from cnnedge.utils import split_list

    rng = rng or (Range(0.05, 4) if cast is float else Range(4, 1024, integer=True))
    return list(dict.fromkeys(number(v, flag, rng) for v in split_list(values)))  # each once


def default_space(channels: int, source_size) -> dict:
    """{"models", "widths", "sizes", "pools", "colors"} that suit the data."""
    if channels == 1:
        side = int(min(source_size)) if source_size else 28
        return {
            "models": GREY_MEMBERS,
            "widths": WIDTHS,
            "sizes": (side,),
            "pools": ("max",),
            "colors": ("grey",),
        }
    return {
        "models": RGB_MEMBERS,
        "widths": WIDTHS,
        "sizes": (32, 48, 64),
        "pools": ("max",),
        "colors": ("rgb",),
    }


def candidates(
    channels: int,
    source_size,
    *,
    models=None,
    widths=None,
    sizes=None,
    pools=None,
    colors=None,
    kernels=None,
) -> list[Candidate]:
    """Every combination of the given (else default) choices, checked.

    Args:
        channels: The data's channels.
        source_size: The data's (H, W), when it has one.
        models: GMP family members (comma list); known members only.
        widths: Width multipliers.
        sizes: Square input sides; those under a member's total stride are left out.
        pools: Heads: ``max``, ``avg``, ``concat`` (for the members that build it).
        colors: ``rgb`` (colour data only) and/or ``grey``.
        kernels: Depthwise kernels (for the members that take one).

    Returns:
        The :class:`Candidate` list.
    """
    from cnnedge import models as registry
    from cnnedge.utils import split_list, unknown

    space = default_space(channels, source_size)
    names = list(dict.fromkeys(split_list(models))) if models else list(space["models"])
    ws = _numbers(widths, "--widths", float) if widths else list(space["widths"])
    ss = _numbers(sizes, "--sizes", int) if sizes else list(space["sizes"])
    ps = list(dict.fromkeys(split_list(pools))) if pools else list(space["pools"])
    greys = _colors(colors, channels) if colors else [c == "grey" and channels == 3 for c in space["colors"]]
    ks = _numbers(kernels, "--kernels", int, Range(1, 15, integer=True)) if kernels else [3]
    known = registry.list_models()
    for n in names:
        if n not in known or not n.startswith("gmp_"):
            raise unknown("GMP family member", n, [m for m in known if m.startswith("gmp_")])
    bad = [p for p in ps if p not in POOLS]
    if bad:
        raise CnnedgeError(f"--pools {','.join(bad)}: pooling is {', '.join(POOLS)}")
    out = []
    for n in names:
        stride = registry.min_input_size(registry.create_model(n, num_classes=2, channels=channels))
        heads = [p for p in ps if p != "concat" or _builds(n, channels, pool="concat")]
        kernels_n = [k for k in ks if k == 3 or _builds(n, channels, kernel=k)]
        for s in ss:
            if s < stride:
                continue  # below the member's total stride: no such model
            out += [
                Candidate(n, float(w), int(s), p, g, int(k))
                for w in ws
                for p in heads
                for g in greys
                for k in kernels_n
            ]
    if not out and 3 not in ks:
        raise CnnedgeError(
            f"--kernels {kernels}: none of {', '.join(names)} takes a kernel (the gmp_dw members do)"
        )
    if not out and ps == ["concat"]:
        raise CnnedgeError(
            f"--pools concat: none of {', '.join(names)} builds the concat head (the gmp_dw members do)"
        )
    if not out:
        raise CnnedgeError(
            f"the search space is empty: every size in {ss} is under the total stride of {', '.join(names)}"
        )
    return out


COLORS = {"rgb": "rgb", "color": "rgb", "colour": "rgb", "grey": "grey", "gray": "grey"}


def color_names(values) -> list[str]:
    """--colors as ``rgb`` / ``grey``, each once; an unknown name is one line."""
    from cnnedge.utils import split_list, unknown

    out = []
    for v in split_list(values):
        if v.lower() not in COLORS:
            raise unknown("colour", v, ["rgb", "grey"])
        out.append(COLORS[v.lower()])
    return list(dict.fromkeys(out))


def asks_grey(values) -> bool:
    """Whether --colors asks for grey models."""
    return bool(values) and "grey" in color_names(values)


def _colors(values, channels: int) -> list[bool]:
    """--colors rgb,grey as the candidates' ``grey`` flags (grey data: grey only)."""
    names = color_names(values)
    if "rgb" in names and channels == 1:
        raise CnnedgeError(
            "--colors rgb: the data is grey (one channel, or data.channels=1 in the recipe); "
            "a grey model is the only choice"
        )
    return list(dict.fromkeys(n == "grey" and channels == 3 for n in names))


def _builds(member: str, channels: int, **option) -> bool:
    """Whether ``member`` builds with ``option`` (the concat head, a depthwise kernel): the
    members that do not are left out of that choice."""
    from cnnedge import models as registry

    try:
        registry.create_model(member, num_classes=2, channels=channels, **option)
    except CnnedgeError:
        return False
    return True
