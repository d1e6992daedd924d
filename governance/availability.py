"""Item availability on the serving path: which model rows a request in a region may not be given.

The store says what is unavailable (:func:`audits.availability.unavailable_items`:
everywhere, and per region); :class:`AvailabilityMasks` turns it into boolean
masks over a model's items once per engine, so a request pays one dictionary
lookup. The masks feed the request's ``allowed`` items, which the model's
ranking and the popularity lists filter *before* they cut the list to ``k``:
a list comes back full whenever enough available items exist.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from audits.availability import canonical_region

__all__ = ["REGION_KEY", "AvailabilityMasks", "combine"]

REGION_KEY = "region"
"""The request context's key naming the region the list is for."""


class AvailabilityMasks:
    """Per-region masks of the items that may be served (True: available), over one model's items.

    ``everywhere``: ids unavailable in every region; ``by_region``: region -> ids
    unavailable there. Ids the model does not know are ignored. A region with no
    restriction of its own shares the ``everywhere`` mask.
    """

    def __init__(self, item_ids: np.ndarray, everywhere: Iterable[str] = (), by_region: Mapping[str, Iterable[str]] | None = None) -> None:
        index = pd.Index(np.asarray(item_ids, dtype=object).astype(str))
        n = len(index)

        def mask_of(ids: Iterable[str]) -> np.ndarray:
            mask = np.ones(n, dtype=bool)
            idx = index.get_indexer(list(map(str, ids)))
            mask[idx[idx >= 0]] = False
            return mask

        base = mask_of(everywhere)
        self._everywhere: np.ndarray | None = None if base.all() else base
        self._regions: dict[str, np.ndarray] = {}
        for region, ids in (by_region or {}).items():
            mask = base & mask_of(ids)
            if not mask.all():
                key = canonical_region(region)  # region codes are case-insensitive
                previous = self._regions.get(key)
                self._regions[key] = mask if previous is None else previous & mask
        self.unavailable_everywhere = int(n - base.sum())

    @classmethod
    def of(cls, item_ids: np.ndarray, unavailable: Any | None) -> AvailabilityMasks:
        """Masks for ``unavailable`` (an :class:`audits.availability.Unavailable`, or None: everything available)."""
        if unavailable is None:
            return cls(item_ids)
        return cls(item_ids, unavailable.everywhere, unavailable.by_region)

    def allowed(self, context: Mapping[str, Any]) -> np.ndarray | None:
        """The items a request with ``context`` may be given (None: all). Never changed by the caller."""
        region = context.get(REGION_KEY)
        if region:
            mask = self._regions.get(canonical_region(region))
            if mask is not None:
                return mask
        return self._everywhere


def combine(a: np.ndarray | None, b: np.ndarray | None) -> np.ndarray | None:
    """Both masks' allowed items (None means all)."""
    if a is None:
        return b
    if b is None:
        return a
    return a & b
