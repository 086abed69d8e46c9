"""The gate of an agreement: its exact 95 % interval (Clopper–Pearson) and the verdict
``pass``, ``fail``, ``inconclusive`` or ``info`` (see :func:`gate`)."""

from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

# From this many images on, the gate is the plain comparison: the interval is then narrow
# enough (98.84–99.84 % for 995 of 1,000) that "under the bar" means what it says.
HARD_GATE_IMAGES = 1000
CONFIDENCE = 0.95


def _lower_bound(agreed: int, n: int, alpha: float) -> float:
    """The p where P(X >= agreed | n, p) = alpha: the lower Clopper–Pearson bound, by bisection on
    the binomial tail (summed in log space), so no scipy is needed."""
    if agreed <= 0:
        return 0.0
    i = np.arange(agreed, n + 1)
    log_comb = np.concatenate([[0.0], np.cumsum(np.log(np.arange(n, 0, -1)) - np.log(np.arange(1, n + 1)))])[
        agreed:
    ]
    lo, hi = 0.0, 1.0
    for _ in range(64):  # the tail grows with p; 64 halvings reach float precision
        p = (lo + hi) / 2
        t = log_comb + i * np.log(p) + (n - i) * np.log1p(-p)
        m = t.max()
        lo, hi = (p, hi) if np.exp(m) * np.exp(t - m).sum() < alpha else (lo, p)
    return (lo + hi) / 2


def agreement_interval(agreed: int, n: int, confidence: float = CONFIDENCE) -> Tuple[float, float]:
    """The Clopper–Pearson ("exact") ``confidence`` interval of an agreement of ``agreed`` images
    out of ``n``: (0, 1) for n = 0, and 1.0 / 0.0 exactly at the ends.

    Clopper–Pearson rather than Wilson: an upper bound under the threshold is then an exact
    one-sided binomial test at 2.5 %. Wilson's upper bound is too low near 100 % at small n:
    one fp32 flip in 120 images gives Wilson 99.85 %, under the 99.9 % bar, yet an artifact
    exactly at the bar flips at least one of 120 images 11 % of the time (Clopper–Pearson: 99.98 %).
    """
    if not 0 <= agreed <= n:
        raise ValueError(f"agreed must be in 0..n, got {agreed} of {n}")
    if n == 0:
        return 0.0, 1.0
    alpha = (1 - confidence) / 2
    return _lower_bound(agreed, n, alpha), 1.0 - _lower_bound(n - agreed, n, alpha)


def gate(agreed: int, n: int, threshold: Optional[float], *, gated: bool = True) -> str:
    """The gate of ``agreed`` of ``n`` images agreeing, against ``threshold`` (a fraction).

    ``info`` when there is no threshold or the row is not ``gated``; ``pass`` when the agreement
    reaches the threshold; under it, with fewer than HARD_GATE_IMAGES images, ``inconclusive``
    while the upper bound of the 95 % interval still reaches the threshold (the images cannot
    tell the artifact from one at the bar: rerun on more) and ``fail`` once it is under it too;
    from HARD_GATE_IMAGES images on, under the threshold is ``fail``.
    """
    if threshold is None or not gated:
        return "info"
    if n and agreed / n >= threshold:
        return "pass"
    if n < HARD_GATE_IMAGES and agreement_interval(agreed, n)[1] >= threshold:
        return "inconclusive"
    return "fail"
