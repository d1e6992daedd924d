"""Two-tower retrieval (the ``two_tower`` family): a user tower and an item tower scored by a dot product.

* **User tower**: the user's id embedding and the mean embedding of the items in
  their history, through a two-layer MLP. In training the positive being
  predicted is left out of the history mean (leave-one-out), so the tower
  cannot learn to find an item in its own input.
* **Item tower**: the item's id embedding and, when item categories are given
  to :meth:`TwoTowerRecommender.fit`, the mean of its categories' embeddings,
  through a two-layer MLP.
* Both towers' outputs are L2-normalised, so the score is a cosine; training
  minimises the softmax cross-entropy of each (user, positive) pair against the
  other items of the mini-batch (in-batch negatives, with other positives of
  the same user masked), divided by a temperature. Optional **hard negatives**:
  from epoch ``hard_negative_start`` on, each pair also meets
  ``hard_negatives`` items drawn from its user's ``hard_negative_pool`` best
  non-positive items under the current model (mined once per epoch).

Serving precomputes both towers: a list is ``user_vectors @ item_vectors.T``,
and :func:`quantize_two_tower` gives the int8 version of the retrieval step
(the item matrix as int8 per item, scored with fbgemm's int8 GEMM). Tags are
``latent_match`` (not exact: a cosine in a learned space is no decomposition of
the score): the history items closest to the recommended item in the item
tower's space. Erasure retrains (see :mod:`recommender.families._torch_common`).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn

from recommender.data import InteractionMatrix
from recommender.errors import ConfigError
from recommender.families._torch_common import NeuralModel, ParamSpec, csr_bags, torch_session
from recommender.family import ErasureKind, Family, ModelTag, csr_from_arrays, register_family
from recommender.scoring import block_rows, mask_seen, top_k_rows

__all__ = [
    "GROUPED_FROM",
    "GROUPED_FROM_CELLS",
    "QuantizedTwoTower",
    "TwoTowerRecommender",
    "quantize_item_rows",
    "quantize_two_tower",
    "select_row_top_k",
    "select_top_k",
    "time_scoring",
]


class _TwoTower(nn.Module):
    def __init__(self, n_users: int, n_items: int, n_categories: int, dim: int, hidden: int) -> None:
        super().__init__()
        self.user_id = nn.Embedding(n_users, dim)
        self.history = nn.EmbeddingBag(n_items, dim, mode="sum")
        self.item_id = nn.Embedding(n_items, dim)
        self.category = nn.EmbeddingBag(n_categories, dim, mode="mean") if n_categories else None
        self.user_mlp = nn.Sequential(nn.Linear(2 * dim, hidden), nn.ReLU(), nn.Linear(hidden, dim))
        item_in = 2 * dim if n_categories else dim
        self.item_mlp = nn.Sequential(nn.Linear(item_in, hidden), nn.ReLU(), nn.Linear(hidden, dim))
        for emb in (self.user_id, self.history, self.item_id, *([self.category] if self.category is not None else [])):
            nn.init.normal_(emb.weight, std=0.1)

    def users(self, rows: torch.Tensor, bags: torch.Tensor, offsets: torch.Tensor, lengths: torch.Tensor, leave_out: torch.Tensor | None) -> torch.Tensor:
        summed = self.history(bags, offsets)
        n = lengths.to(summed.dtype)
        if leave_out is not None:
            summed = summed - self.history.weight[leave_out]
            n = n - 1
        mean = summed / n.clamp(min=1).unsqueeze(1)
        mean = torch.where((n > 0).unsqueeze(1), mean, torch.zeros_like(mean))
        return self.user_vectors(rows, mean)

    def user_vectors(self, rows: torch.Tensor, history_mean: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.user_mlp(torch.cat([self.user_id(rows), history_mean], dim=1)), dim=1)

    def items(self, cols: torch.Tensor, cat_bags: tuple[torch.Tensor, torch.Tensor] | None) -> torch.Tensor:
        parts = [self.item_id(cols)]
        if self.category is not None and cat_bags is not None:
            parts.append(self.category(*cat_bags))
        return F.normalize(self.item_mlp(torch.cat(parts, dim=1)), dim=1)


class TwoTowerRecommender(NeuralModel):
    """Two-tower retrieval with in-batch and optional hard negatives (see the module docstring).

    Parameters
    ----------
    dim:
        Embedding and output dimension of both towers.
    hidden:
        Hidden width of each tower's MLP.
    epochs, batch_size, lr, weight_decay, optimizer:
        Training (``optimizer``: ``adam`` or ``sgd``). ``batch_size`` pairs per
        step are also each other's negatives.
    temperature:
        Divides the cosine logits of the softmax.
    hard_negatives:
        Mined negatives per pair (0: in-batch negatives only).
    hard_negative_pool:
        The mined items per user: their best-scoring non-positives.
    hard_negative_start:
        First epoch (0-based) that uses mined negatives.
    use_categories:
        Feed item categories to the item tower when :meth:`fit` gets them.
    logq_correction:
        Subtract the log of each in-batch item's sampling probability (its share
        of the training pairs) from its logit as a negative (Yi et al. 2019), so
        popular items are not over-penalised for appearing in many batches.
    random_state, num_threads:
        Seed and CPU threads; the same pair gives the same weights.
    health:
        :class:`~recommender.training_health.HealthConfig` fields (a mapping):
        when the run counts as unstable and whether that raises.
    """

    name: ClassVar[str] = "two_tower"
    family: ClassVar[str] = "two_tower"
    inputs: ClassVar[frozenset[str]] = frozenset({"interactions", "item_category"})
    erasure: ClassVar[ErasureKind] = ErasureKind.retrain
    _specs: ClassVar[dict[str, ParamSpec]] = {
        "dim": ParamSpec(int, 1),
        "hidden": ParamSpec(int, 1),
        "temperature": ParamSpec((int, float), 0, low_inclusive=False),
        "hard_negatives": ParamSpec(int, 0),
        "hard_negative_pool": ParamSpec(int, 1),
        "hard_negative_start": ParamSpec(int, 0),
        "use_categories": ParamSpec(bool, choices=(True, False)),
        "logq_correction": ParamSpec(bool, choices=(True, False)),
    }

    def __init__(
        self,
        dim: int = 64,
        hidden: int = 128,
        epochs: int = 8,
        batch_size: int = 1024,
        lr: float = 0.01,
        weight_decay: float = 0.0,
        temperature: float = 0.1,
        hard_negatives: int = 0,
        hard_negative_pool: int = 50,
        hard_negative_start: int = 4,
        use_categories: bool = True,
        logq_correction: bool = True,
        optimizer: str = "adam",
        random_state: int = 0,
        num_threads: int = 1,
        health: Mapping[str, Any] | None = None,
    ) -> None:
        self.dim = dim
        self.hidden = hidden
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.temperature = temperature
        self.hard_negatives = hard_negatives
        self.hard_negative_pool = hard_negative_pool
        self.hard_negative_start = hard_negative_start
        self.use_categories = use_categories
        self.logq_correction = logq_correction
        self.optimizer = optimizer
        self.random_state = random_state
        self.num_threads = num_threads
        self.health = health

    def fit(
        self, train: InteractionMatrix, *, show_progress: bool = False, item_categories: Sequence[str | None] | None = None
    ) -> TwoTowerRecommender:
        """Learn from ``train``; ``item_categories`` (one ``|``-separated string or None per item column) feed the item tower."""
        self._given_categories = item_categories
        try:
            return super().fit(train, show_progress=show_progress)
        finally:
            self._given_categories = None

    # -- side input: categories -------------------------------------------------
    def _prepare_side(self, train: InteractionMatrix) -> None:
        given = getattr(self, "_given_categories", None)
        self.side_ = {}
        if given is None or not self.use_categories:
            self.categories_ = np.array([], dtype=str)
            self.category_matrix_ = sp.csr_matrix((train.n_items, 0), dtype=np.float32)
            return
        values = list(given)
        if len(values) != train.n_items:
            raise ConfigError(f"TwoTowerRecommender.fit: item_categories has {len(values)} entries; the training matrix has {train.n_items} items")
        rows, names = [], []
        for col, value in enumerate(values):
            if value is None or (isinstance(value, float) and np.isnan(value)):
                continue
            if not isinstance(value, str):
                raise ConfigError(f"TwoTowerRecommender.fit: item_categories[{col}] must be a '|'-separated string or None, got {value!r}")
            for part in value.split("|"):
                if part.strip():
                    rows.append(col)
                    names.append(part.strip())
        vocab, codes = np.unique(np.asarray(names, dtype=str), return_inverse=True)
        self.categories_ = vocab
        self.category_matrix_ = sp.csr_matrix(
            (np.ones(len(rows), dtype=np.float32), (np.asarray(rows, dtype=np.int64), codes)), shape=(train.n_items, len(vocab))
        )
        self.category_matrix_.sum_duplicates()
        self.category_matrix_.sort_indices()

    def _fit_categories(self) -> list[str | None] | None:
        if self.category_matrix_.shape[1] == 0:
            return None
        m = self.category_matrix_
        return ["|".join(self.categories_[m.indices[m.indptr[c] : m.indptr[c + 1]]]) or None for c in range(m.shape[0])]

    def _side_without(self, keep_rows: np.ndarray, keep_cols: np.ndarray) -> dict[str, Any]:
        categories = self._fit_categories()
        return {"item_categories": None if categories is None else [categories[c] for c in keep_cols]}

    def _side_arrays(self) -> dict[str, np.ndarray]:
        m = self.category_matrix_
        return {"categories": np.asarray(self.categories_, dtype=str), "cat_indptr": m.indptr, "cat_indices": m.indices}

    def _load_side(self, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> None:
        self.side_ = {}
        self.categories_ = arrays["categories"].astype(str)
        indptr, indices = arrays["cat_indptr"], arrays["cat_indices"]
        self.category_matrix_ = csr_from_arrays(
            np.ones(len(indices), dtype=np.float32), indices, indptr, (max(len(indptr) - 1, 0), len(self.categories_)),
            name="the item categories (side:cat_indptr, side:cat_indices)",
        )  # fmt: skip

    # -- network and training -----------------------------------------------------
    def _new_module(self, train: InteractionMatrix) -> nn.Module:
        return _TwoTower(train.n_users, train.n_items, self.category_matrix_.shape[1], self.dim, self.hidden)

    def _cat_bags(self, cols: np.ndarray) -> tuple[torch.Tensor, torch.Tensor] | None:
        if self.category_matrix_.shape[1] == 0:
            return None
        idx, off = csr_bags(self.category_matrix_, cols)
        return torch.from_numpy(idx), torch.from_numpy(off)

    def _user_inputs(self, binary: sp.csr_matrix, rows: np.ndarray) -> tuple[torch.Tensor, ...]:
        idx, off = csr_bags(binary, rows)
        lengths = np.diff(binary.indptr)[rows]
        return torch.from_numpy(rows.astype(np.int64)), torch.from_numpy(idx), torch.from_numpy(off), torch.from_numpy(lengths.astype(np.int64))

    def _steps(self, train: InteractionMatrix, module: nn.Module, gen: torch.Generator) -> Callable[[int], Iterable[Callable[[], torch.Tensor]]]:
        binary = sp.csr_matrix((train.matrix > 0).astype(np.float32))
        binary.sort_indices()
        coo = binary.tocoo()
        pair_users, pair_items = coo.row.astype(np.int64), coo.col.astype(np.int64)
        n_pairs = len(pair_users)
        batch = min(self.batch_size, n_pairs)
        net: _TwoTower = module  # type: ignore[assignment]
        counts = np.bincount(pair_items, minlength=train.n_items).astype(np.float64)
        log_q = torch.from_numpy(np.log(np.maximum(counts, 1) / n_pairs).astype(np.float32)) if self.logq_correction else None
        state: dict[str, np.ndarray | None] = {"pool": None}

        def mine() -> np.ndarray:
            """Each user's ``hard_negative_pool`` best-scoring non-positive items under the current weights."""
            with torch.no_grad():
                users, items = self._tower_vectors(net, binary)
            k = min(self.hard_negative_pool, train.n_items)
            pool = np.empty((train.n_users, k), dtype=np.int64)
            step = block_rows(train.n_items)
            for start in range(0, train.n_users, step):
                rows = np.arange(start, min(start + step, train.n_users))
                scores = users[rows] @ items.T
                mask_seen(scores, binary, rows)
                idx, _ = top_k_rows(scores, k)
                # a user with fewer than k non-positives: repeat their first mined item (or item 0)
                first = np.where(idx[:, :1] >= 0, idx[:, :1], 0)
                pool[start : start + len(rows)] = np.where(idx >= 0, idx, first)
            return pool

        def steps(epoch: int) -> Iterable[Callable[[], torch.Tensor]]:
            use_hard = self.hard_negatives > 0 and epoch >= self.hard_negative_start
            if use_hard:
                net.eval()
                state["pool"] = mine()
                net.train()
            order = torch.randperm(n_pairs, generator=gen).numpy()
            for start in range(0, n_pairs, batch):
                chosen = order[start : start + batch]
                yield self._batch_loss(net, binary, pair_users[chosen], pair_items[chosen], state["pool"] if use_hard else None, gen, log_q)

        return steps

    def _batch_loss(
        self,
        net: _TwoTower,
        binary: sp.csr_matrix,
        users: np.ndarray,
        items: np.ndarray,
        pool: np.ndarray | None,
        gen: torch.Generator,
        log_q: torch.Tensor | None,
    ) -> Callable[[], torch.Tensor]:
        def loss() -> torch.Tensor:
            # each distinct user's history is summed once; the pair's own item is then taken out of its mean
            distinct, back = np.unique(users, return_inverse=True)
            rows, bags, offsets, lengths = self._user_inputs(binary, distinct)
            summed = net.history(bags, offsets)[torch.from_numpy(back)]
            item_t = torch.from_numpy(items)
            summed = summed - net.history.weight[item_t]
            n = (lengths[torch.from_numpy(back)] - 1).to(summed.dtype)
            mean = torch.where((n > 0).unsqueeze(1), summed / n.clamp(min=1).unsqueeze(1), torch.zeros_like(summed))
            u = net.user_vectors(rows[torch.from_numpy(back)], mean)
            distinct_items, item_back = np.unique(items, return_inverse=True)
            v = net.items(torch.from_numpy(distinct_items), self._cat_bags(distinct_items))[torch.from_numpy(item_back)]
            logits = (u @ v.T) / self.temperature
            if log_q is not None:
                logits = logits - log_q[item_t].unsqueeze(0)
            # another pair's item that is also a positive of this user is no negative
            positive = np.asarray(binary[distinct][:, items].todense())[back] > 0
            np.fill_diagonal(positive, False)
            logits = logits.masked_fill(torch.from_numpy(positive), float("-inf"))
            if pool is not None:
                picks = torch.randint(pool.shape[1], (len(users), self.hard_negatives), generator=gen).numpy()
                hard = pool[users[:, None], picks]
                vh = net.items(torch.from_numpy(hard.ravel()), self._cat_bags(hard.ravel())).view(len(users), self.hard_negatives, -1)
                logits = torch.cat([logits, torch.einsum("bd,bhd->bh", u, vh) / self.temperature], dim=1)
            target = torch.arange(len(users))
            return F.cross_entropy(logits, target)

        return loss

    def _tower_vectors(self, net: _TwoTower, binary: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
        """Every user's and every item's tower output (float32 numpy)."""
        n_users, n_items = binary.shape
        with torch.no_grad():
            users = []
            for start in range(0, n_users, 4096):
                rows = np.arange(start, min(start + 4096, n_users))
                users.append(net.users(*self._user_inputs(binary, rows), leave_out=None).numpy())
            cols = np.arange(n_items)
            items = net.items(torch.from_numpy(cols), self._cat_bags(cols)).numpy()
        return np.vstack(users).astype(np.float32), items.astype(np.float32)

    def _prepare_scoring(self) -> None:
        binary = sp.csr_matrix((self.train_.matrix > 0).astype(np.float32))
        binary.sort_indices()
        with torch_session(self.random_state, self.num_threads):
            self.user_vectors_, self.item_vectors_ = self._tower_vectors(self.module_, binary)  # type: ignore[arg-type]

    def _score_rows(self, rows: np.ndarray) -> np.ndarray:
        return self.user_vectors_[rows] @ self.item_vectors_.T

    # -- tags ---------------------------------------------------------------------
    def explain(self, user_id: str, item_ids: Sequence[str], *, n_history: int = 3) -> list[list[ModelTag]]:
        """``latent_match`` tags: the (up to ``n_history``) history items nearest each item in the item tower's space.

        ``evidence`` holds the cosine of each named history item to the
        recommended one and the list score (the user-item cosine). Not exact:
        the score is the user tower's output against the item's, which no
        history item's similarity decomposes. A user the model does not know
        gets ``popular`` tags (their list is the popularity ranking).
        """
        return self._explain_latent(
            user_id,
            item_ids,
            n_history=n_history,
            space=lambda: self.item_vectors_,
            scores=lambda row, cols: self.item_vectors_[cols] @ self.user_vectors_[row],
            score_name="score",
        )


RETRIEVAL_BLOCK = 32
"""Users per scoring block in :meth:`QuantizedTwoTower.top_k` (both paths)."""

GROUPED_FROM = 4096
"""Catalogue width from which :func:`select_top_k` selects among the best groups' columns instead of every column."""
GROUPED_FROM_CELLS = 49_152
"""...and the size of the score block (rows x columns) from which it does: the grouped path's few small operations
cost a fixed ~100 us per call on a 2-core AVX2 machine (1 thread), which one ``torch.topk`` over fewer cells beats
(one user: topk 94 us against 119 at 32,768 items, 176 against 123 at 56,448; 8 users: 102 against 197 at
4,096 items, 346 against 219 at 16,384). Both give the same entries (up to ties at the ``k``-th place)."""


def select_top_k(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` largest ``(values, columns)`` of each row of ``scores``, best first (both retrieval paths use it for blocks of users; one user per call takes :func:`select_row_top_k`).

    Below :data:`GROUPED_FROM` columns, or :data:`GROUPED_FROM_CELLS` cells, it is one ``torch.topk``. On a wider
    row the columns are cut into ``stride`` groups of ``g`` (group ``j`` is
    columns ``j, j + stride, ..., j + (g - 1) * stride``, ``g`` near
    ``sqrt(n / k)``), so the group maxima are one reduction over contiguous
    slices; a row's ``k`` best entries lie in its ``k`` groups with the largest
    maxima (an entry above the ``k``-th best is in a group whose maximum beats
    it, and at most ``k - 1`` groups can), up to ties at the ``k``-th place.
    ``torch.topk`` then runs over those ``k * g`` columns (and the ``< g``
    columns past the last full group) instead of all ``n``: a few hundred
    instead of tens of thousands, where a full ``topk`` cost more than the
    product itself.
    """
    n_rows, n_cols = scores.shape
    k = min(int(k), n_cols)
    g = int(np.sqrt(n_cols / max(k, 1)))
    if n_cols < GROUPED_FROM or n_rows * n_cols < GROUPED_FROM_CELLS or g < 2:
        return torch.topk(scores, k, dim=1)
    stride = n_cols // g
    maxima = scores[:, : stride * g].view(n_rows, g, stride).amax(dim=1)
    groups = torch.topk(maxima, k, dim=1).indices
    cols = (groups.unsqueeze(2) + stride * torch.arange(g)).view(n_rows, k * g)
    if stride * g < n_cols:
        cols = torch.cat([cols, torch.arange(stride * g, n_cols).expand(n_rows, -1)], dim=1)
    values, pick = torch.topk(torch.gather(scores, 1, cols), k, dim=1)
    return values, torch.gather(cols, 1, pick)


def select_row_top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best ``(values, columns)`` of one score row (a 1-d array), by value, ties by column index: one user's selection.

    Exact, ties included. On a row of :data:`GROUPED_FROM` columns or more it
    uses the groups of :func:`select_top_k` (group ``j`` is columns ``j, j +
    stride, ...``; their maxima are one numpy reduction over the row in memory
    order) for a floor: the ``k``-th largest group maximum. At most ``k - 1``
    groups have a maximum above the row's ``k``-th best entry, so the floor is
    at most that entry, and the columns at or above the floor (one comparison
    over the row; about ``k`` of them on the two-tower scores measured) hold
    the ``k`` best and every entry tied with the ``k``-th. Those few are then
    ordered by value and column. For one row this is a handful of numpy calls,
    where ``torch.topk`` over the row, or :func:`select_top_k`'s gather of
    ``k`` groups, costs more. ``-inf`` (masked) entries come last, as any
    other value would.
    """
    scores = np.asarray(scores).reshape(-1)
    n = scores.shape[0]
    k = min(int(k), n)
    if k <= 0:
        return scores[:0], np.zeros(0, dtype=np.int64)
    g = int(np.sqrt(n / k))
    stride = n // max(g, 1)
    if n >= GROUPED_FROM and g >= 2 and stride >= k:
        maxima = scores[: stride * g].reshape(g, stride).max(axis=0)
        cols = np.flatnonzero(scores >= np.partition(maxima, stride - k)[stride - k])
        values = scores[cols]
    else:
        cols, values = np.arange(n), scores
    if len(values) > 4 * k:
        keep = np.flatnonzero(values >= np.partition(values, len(values) - k)[len(values) - k])
        cols, values = cols[keep], values[keep]
    order = np.lexsort((cols, -values))[:k]
    return values[order], cols[order].astype(np.int64, copy=False)


_USER_SCALE = 1.0 / 63.0
_USER_ZERO_POINT = 64
"""uint8 quantisation of a user row scaled into [-1, 1]: codes 1..127 (7 bits), ``round(x * 63) + 64``.

7 bits, not 8: fbgemm's AVX2 kernel multiplies uint8 activations by int8
weights with ``vpmaddubsw``, which adds each pair of products in int16 and
saturates. Codes up to 255 against weights up to 127 overflow it (a pair can
reach 64,770): a 16-d model's scores were off by up to 0.37 (cosines). With
codes at most 127 a pair stays under 32,767 and the GEMM is exact in integers
(what ``reduce_range=True`` does for fbgemm's dynamic path).
"""


@dataclass
class QuantizedTwoTower:
    """The int8 retrieval path of a fitted :class:`TwoTowerRecommender`.

    A two-tower model's inference cost is scoring users against the whole
    catalogue (the item tower runs offline, once per item). Here the item
    matrix is stored as int8 with one scale per item (symmetric, per row:
    ``round(v / s)``, ``s = max|v| / 127``) and packed for fbgemm's int8 GEMM.
    :meth:`item_scores` quantises the user vectors to uint8, multiplies in
    int8 with int32 accumulation and writes float scores with the item scales
    applied, in one fbgemm call
    (``torch.ops.quantized.linear_with_input_q_dq_qweight_dq_output_fp32``).

    Users are quantised **per row** with **fixed** parameters: each user vector
    is divided by its largest absolute component (so it lies in [-1, 1] with an
    entry at +-1) and quantised with scale ``1/63`` and zero point 64 (codes
    1..127, see :data:`_USER_ZERO_POINT` for why 7 bits). So a user's codes
    (and scores) do not depend on the other users of its call, and each row
    spans the code range. (The earlier version fixed the range by adding two
    anchor rows, ``+e_0`` and ``-e_0``, to every ``linear_dynamic`` call, with
    8-bit codes: a pass for the range, a concatenation and two extra output
    rows of the catalogue's width per call, and int16 saturation inside
    fbgemm's kernel.)
    The row factor is put back on the scores (in :meth:`top_k`, on the ``k``
    kept values only: a positive factor per row leaves its ranking as is).
    One user per call (the served step at batch 1) takes a leaner route with
    the same scoring call, :meth:`_row_top_k`, on both paths.
    :meth:`item_scores` with ``int8=False`` does the same work in float32
    (``F.linear`` over the float item matrix, MKL's sgemm).

    The user tower stays float in both paths: its two ``Linear`` layers
    (``2*dim -> hidden -> dim``) are too small for dynamic int8 to pay off
    (quantising the inputs costs more than the int8 GEMM saves), so it is
    shared, and timed separately by the benchmark.
    """

    model: TwoTowerRecommender
    item_float: torch.Tensor
    item_int8: torch.Tensor
    item_scales: torch.Tensor
    packed: Any

    def user_vectors(self, rows: np.ndarray) -> torch.Tensor:
        """The user tower's (float32) output for training rows ``rows``, from their id and history."""
        rows = np.asarray(rows, dtype=np.int64)
        net: _TwoTower = self.model.module_  # type: ignore[assignment]
        with torch.inference_mode():
            return net.users(*self.model._user_inputs(self.model._binary_, rows), leave_out=None)

    def _int8_unscaled(self, users: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """int8 scores of each user row divided by its largest absolute component, and that factor per row (``(n, 1)``)."""
        factor = torch.linalg.vector_norm(users, float("inf"), dim=1, keepdim=True).clamp_(min=torch.finfo(torch.float32).tiny)
        scores = torch.ops.quantized.linear_with_input_q_dq_qweight_dq_output_fp32(users / factor, _USER_SCALE, _USER_ZERO_POINT, self.packed)
        return scores, factor

    def item_scores(self, users: torch.Tensor, *, int8: bool = True) -> torch.Tensor:
        """Scores of user vectors ``users`` (``(n, dim)`` float32) against every item: int8 GEMM, or float32 with ``int8=False``."""
        with torch.inference_mode():
            if int8:
                scores, factor = self._int8_unscaled(users)
                return scores.mul_(factor)
            return F.linear(users, self.item_float)

    def _row_top_k(self, user: torch.Tensor, k: int, int8: bool, seen_row: int | None) -> tuple[np.ndarray, np.ndarray, np.float32]:
        """One user per call: score, mask the seen items, :func:`select_row_top_k`; exact, ties by column index.

        Returns the ``k`` values (int8: before the row factor), their columns
        and the row factor (1 for float). The same scores as a block (the same
        fbgemm call on the same codes, or ``F.linear``), with the per-block
        work a single row does not need left out: the row factor and its
        division are numpy on ``dim`` numbers, the seen items are a plain slice
        of the CSR, and the selection is numpy on the score row. At one user
        per call each torch op costs microseconds of dispatch (``inference_mode``
        included; the user is detached instead), and ``torch.topk`` over the
        row more than the whole selection here.
        """
        user = user.detach()
        if int8:
            u = user.numpy()
            factor = np.abs(u).max()
            if not factor > 0:
                factor = np.float32(torch.finfo(torch.float32).tiny)
            scores = torch.ops.quantized.linear_with_input_q_dq_qweight_dq_output_fp32(
                torch.from_numpy(u / factor), _USER_SCALE, _USER_ZERO_POINT, self.packed
            )
        else:
            factor = np.float32(1.0)
            scores = F.linear(user, self.item_float)
        row = scores.numpy()[0]  # a fresh contiguous buffer: its numpy view shares memory
        if seen_row is not None:
            seen: sp.csr_matrix = self.model._binary_
            row[seen.indices[seen.indptr[seen_row] : seen.indptr[seen_row + 1]]] = -np.inf
        values, cols = select_row_top_k(row, k)
        return values, cols, factor

    def _block_top_k(self, block: torch.Tensor, k: int, int8: bool, seen_rows: np.ndarray | None) -> tuple[torch.Tensor, torch.Tensor]:
        """One block of :meth:`top_k`: score, mask the seen cells in place, select; int8 values get the row factor back."""
        if block.shape[0] == 1:
            values, cols, factor = self._row_top_k(block, k, int8, None if seen_rows is None else int(seen_rows[0]))
            return torch.from_numpy(values * factor).unsqueeze(0), torch.from_numpy(cols).unsqueeze(0)
        if int8:
            scores, factor = self._int8_unscaled(block)
        else:
            scores = F.linear(block, self.item_float)
        if seen_rows is not None:
            # the score tensor is a fresh contiguous buffer: its numpy view shares memory
            mask_seen(scores.numpy(), self.model._binary_, seen_rows)
        values, index = select_top_k(scores, k)
        return (values * factor if int8 else values), index

    def top_k(
        self, users: torch.Tensor, k: int, *, int8: bool = True, seen_rows: np.ndarray | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Top-``k`` items per user vector over the whole catalogue, best first: the retrieval step.

        With ``seen_rows`` (the training row of each user vector), the items of
        that row are set to ``-inf`` in the block's score matrix before the
        selection (so they are never chosen; a user with fewer than ``k``
        unseen items gets ``-inf`` values at the end). The selection is
        :func:`select_top_k`, the same on both paths; a block of one user
        goes through :meth:`_row_top_k` (exact, ties by column index). Users are scored in
        blocks of at most :data:`RETRIEVAL_BLOCK` (and within
        :func:`recommender.scoring.block_rows`' memory budget), the same blocks
        on both paths: a block's score matrix then stays near the cache.
        """
        n_items = self.item_float.shape[0]
        k = min(int(k), n_items)
        step = min(RETRIEVAL_BLOCK, block_rows(n_items))
        if seen_rows is not None:
            seen_rows = np.asarray(seen_rows, dtype=np.int64)
            if len(seen_rows) != users.shape[0]:
                raise ConfigError(f"QuantizedTwoTower.top_k: {len(seen_rows)} seen_rows for {users.shape[0]} user vectors")
        with torch.inference_mode():
            if users.shape[0] <= step:
                return self._block_top_k(users, k, int8, seen_rows)
            values, index = [], []
            for start in range(0, users.shape[0], step):
                rows = None if seen_rows is None else seen_rows[start : start + step]
                v, i = self._block_top_k(users[start : start + step], k, int8, rows)
                values.append(v)
                index.append(i)
        if not values:
            return torch.empty((0, k)), torch.empty((0, k), dtype=torch.long)
        return torch.cat(values), torch.cat(index)

    def recommend_vectors(self, users: torch.Tensor, rows: np.ndarray, k: int, *, int8: bool = True) -> np.ndarray:
        """Top-``k`` unseen item columns for user vectors ``users`` of training rows ``rows``: the served step after the tower.

        :meth:`top_k` with the rows' seen items masked, then each list ordered
        by score with ties by column index; ``-1`` where a user runs out of
        unseen items. One user per call goes straight to :meth:`_row_top_k`
        (its lists come out exact and ordered).
        """
        k = int(k)
        rows = np.asarray(rows, dtype=np.int64)
        if len(rows) == 1 and users.shape[0] == 1:  # one user per call: the row path, already exact and ordered
            values, cols, _ = self._row_top_k(users, min(k, self.item_float.shape[0]), int8, int(rows[0]))
            out = np.full((1, k), -1, dtype=np.int64)
            out[0, : len(cols)] = np.where(np.isfinite(values), cols, -1)
            return out
        values, index = self.top_k(users, k, int8=int8, seen_rows=rows)
        vals, cols = values.numpy(), index.numpy()
        if vals.shape[1] > 1 and (vals[:, 1:] == vals[:, :-1]).any():  # torch.topk orders ties arbitrarily
            order = np.lexsort((cols, -vals), axis=1)
            cols, vals = np.take_along_axis(cols, order, axis=1), np.take_along_axis(vals, order, axis=1)
        cols[~np.isfinite(vals)] = -1
        if cols.shape[1] == k:
            return cols
        out = np.full((len(rows), k), -1, dtype=np.int64)
        out[:, : cols.shape[1]] = cols
        return out

    def scores(self, rows: np.ndarray) -> np.ndarray:
        """int8 scores of training rows ``rows`` against every item (float user tower, int8 item scoring)."""
        return self.item_scores(self.user_vectors(rows)).numpy()

    def float_scores(self, rows: np.ndarray) -> np.ndarray:
        """The same path in float32 (equal to the fitted model's scores)."""
        return self.item_scores(self.user_vectors(rows), int8=False).numpy()

    def recommend_index(self, rows: np.ndarray, k: int, *, int8: bool = True) -> np.ndarray:
        """Top-``k`` item columns per training row, seen items filtered: the served lists (user tower, then :meth:`recommend_vectors`).

        The lists are the best ``k`` unseen items (ties by column index),
        ``-1`` where a user runs out of items.
        """
        rows = np.asarray(rows, dtype=np.int64)
        return self.recommend_vectors(self.user_vectors(rows), rows, k, int8=int8)

    def size_bytes(self) -> dict[str, int]:
        """Bytes of the item matrix, float32 vs int8 plus one float32 scale per item."""
        n_items, dim = self.item_float.shape
        return {"float32": n_items * dim * 4, "int8": n_items * dim + n_items * 4}


def quantize_item_rows(item_vectors: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric per-row int8 quantisation: ``(q, s)`` with ``q = round(v / s)`` in [-127, 127] and ``s = max|v| / 127`` per row.

    An all-zero row gets scale 1 (its codes are 0).
    """
    v = torch.from_numpy(np.ascontiguousarray(item_vectors, dtype=np.float32))
    scale = v.abs().amax(dim=1) / 127.0
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    q = torch.clamp(torch.round(v / scale.unsqueeze(1)), -127, 127).to(torch.int8)
    return q, scale


def quantize_two_tower(model: TwoTowerRecommender) -> QuantizedTwoTower:
    """int8 retrieval for a fitted two-tower model: the item matrix as int8 per item, scored with fbgemm's int8 GEMM."""
    if not isinstance(model, TwoTowerRecommender):
        raise ConfigError(f"quantize_two_tower needs a fitted TwoTowerRecommender, got {type(model).__name__}")
    model.check_fitted("quantize_two_tower")
    if "fbgemm" not in torch.backends.quantized.supported_engines:
        raise ConfigError("quantize_two_tower needs torch's fbgemm quantised engine (an x86 CPU build of torch)")
    binary = sp.csr_matrix((model.train_.matrix > 0).astype(np.float32))
    binary.sort_indices()
    model._binary_ = binary
    item_int8, scales = quantize_item_rows(model.item_vectors_)
    with warnings.catch_warnings():
        # torch marks its quantised tensor constructors deprecated in favour of torchao; the API works as documented
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.backends.quantized.engine = "fbgemm"
        weight = torch._make_per_channel_quantized_tensor(item_int8, scales.double(), torch.zeros(len(scales), dtype=torch.long), 0)
        packed = torch.ops.quantized.linear_prepack(weight, None)
    item_float = torch.from_numpy(np.ascontiguousarray(model.item_vectors_, dtype=np.float32))
    return QuantizedTwoTower(model=model, item_float=item_float, item_int8=item_int8, item_scales=scales, packed=packed)


def time_scoring(fn: Callable[[np.ndarray], Any], rows: np.ndarray, *, batch: int, repeats: int = 5) -> float:
    """Median seconds per user of running ``fn`` on ``rows`` in batches of ``batch`` (after one warm-up pass)."""
    rows = np.asarray(rows)
    for start in range(0, min(len(rows), batch * 2), batch):
        fn(rows[start : start + batch])
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for start in range(0, len(rows), batch):
            fn(rows[start : start + batch])
        times.append((time.perf_counter() - t0) / max(len(rows), 1))
    return float(np.median(times))


register_family(
    Family(
        name="two_tower",
        build=TwoTowerRecommender,
        description="Two-tower retrieval (user tower over id and history, item tower over id and categories), in-batch and hard negatives",
        inputs=TwoTowerRecommender.inputs,
        erasure=ErasureKind.retrain,
        extra="neural",
        default_params={},
        small_params={"dim": 16, "hidden": 32, "epochs": 3, "batch_size": 128},
        broken_params={"dim": 0},
    )
)
