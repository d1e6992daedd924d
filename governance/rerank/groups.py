"""The re-rankers' provider-group codes of a catalog, from the item table's provider column.

Every provider-side step reads ``item_group``, one int code per item (``-1``:
unknown). By default a pack has two groups: ``1`` for its
``fairness.protected_provider_group`` and ``0`` for every other known group,
which is what FA*IR (``protected_group: 1``) and the exposure cap expect. A
step that targets several groups (``group_proportions``) needs a code per
group: a pack gives them in ``fairness.provider_group_codes`` (``{major: 0,
independent: 1, regional: 2}``), and groups it does not list are unknown.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from recommender.fairness import read_label, read_labels

__all__ = ["provider_codes"]


def provider_codes(groups: pd.Series, protected: str, codes: Mapping[str, int] | None = None) -> np.ndarray:
    """``(n_items,)`` int64 codes of the provider groups ``groups`` (a string series, missing: ``-1``), labels read
    as the fairness audit reads them (:func:`recommender.fairness.read_labels`), so that the items a re-ranker
    protects are those the audit counts as protected.

    >>> g = pd.Series(["major", "indie", None, "regional"], dtype="string")
    >>> provider_codes(g, "indie").tolist()
    [0, 1, -1, 0]
    >>> provider_codes(g, "indie", {"major": 0, "indie": 1, "regional": 2}).tolist()
    [0, 1, -1, 2]
    >>> provider_codes(pd.Series(["indie ", "  ", "major"], dtype="string"), "indie").tolist()
    [1, -1, 0]
    """
    labels = read_labels(groups.to_numpy(dtype=object))
    missing = labels.isna().to_numpy(dtype=bool)
    if codes is None:
        return np.where(missing, -1, (labels == read_label(protected)).fillna(False).to_numpy(dtype=bool).astype(np.int64))
    mapped = labels.map({read_label(k): v for k, v in codes.items()}).astype("Int64").fillna(-1).to_numpy(dtype=np.int64)
    return np.where(missing, -1, mapped)
