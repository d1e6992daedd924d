"""Multiplicity: p-values corrected for testing several treatments (or metrics) against one level.

Thin over ``statsmodels.stats.multitest.multipletests``: Bonferroni multiplies
each p-value by the number of tests; Holm (1979) steps down through the sorted
p-values and is uniformly more powerful while keeping the familywise error at
the level; Benjamini-Hochberg (``fdr_bh``) controls the false discovery rate
instead, for exploratory secondary metrics. A corrected p-value is compared
with the familywise ``alpha`` directly.
"""

from __future__ import annotations

import math
from typing import Literal, Sequence

import numpy as np
from statsmodels.stats.multitest import multipletests

from recommender.errors import ConfigError

__all__ = ["CorrectionMethod", "correct"]

CorrectionMethod = Literal["none", "bonferroni", "holm", "fdr_bh"]
CORRECTION_METHODS: tuple[str, ...] = ("none", "bonferroni", "holm", "fdr_bh")


def correct(p_values: Sequence[float], method: CorrectionMethod) -> list[float]:
    """The p-values corrected for multiplicity, in the order given.

    >>> correct([0.01, 0.04, 0.03], "holm")
    [0.03, 0.06, 0.06]
    """
    if method not in CORRECTION_METHODS:
        raise ConfigError(f"method must be one of {', '.join(repr(m) for m in CORRECTION_METHODS)}; got {method!r}.")
    values = [float(p) for p in p_values]
    for i, p in enumerate(values):
        if not (math.isfinite(p) and 0.0 <= p <= 1.0):
            raise ConfigError(f"p_values[{i}] must be a probability in [0, 1]; got {p_values[i]!r}.")
    if method == "none" or not values:
        return values
    corrected = multipletests(np.array(values), method=method)[1]
    return [float(p) for p in corrected]
