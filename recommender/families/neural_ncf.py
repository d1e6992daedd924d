"""Neural collaborative filtering (the ``ncf`` family): NeuMF, GMF and an MLP fused (He et al. 2017).

Each (user, item) pair is scored by a generalised matrix factorisation branch
(the element-wise product of a user and an item embedding) and an MLP branch
(an MLP over the concatenation of two other embeddings); the last layer reads
both and gives one logit. Training is binary cross-entropy on every positive of
the training matrix and ``negatives`` items per positive drawn uniformly from
the user's non-positives, redrawn every epoch (the paper's protocol).

Scoring every item for a user needs no per-pair loop: the GMF branch is a
matrix product, and the MLP's first layer splits into a user part and an item
part (``W [p; q] = W_p p + W_q q``), computed once each and broadcast over a
block of users x all items.

Tags are ``latent_match`` (not exact: an MLP's logit does not decompose over
history items): the history items closest to the recommended item in the GMF
branch's item space. Erasure retrains (see :mod:`recommender.families._torch_common`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn

from recommender.data import InteractionMatrix
from recommender.errors import ConfigError
from recommender.families._torch_common import NeuralModel, ParamSpec, torch_session
from recommender.family import ErasureKind, Family, ModelTag, register_family

__all__ = ["NCFRecommender", "sample_negatives"]


class _NeuMF(nn.Module):
    def __init__(self, n_users: int, n_items: int, factors: int, layers: Sequence[int]) -> None:
        super().__init__()
        half = layers[0] // 2
        self.gmf_user = nn.Embedding(n_users, factors)
        self.gmf_item = nn.Embedding(n_items, factors)
        self.mlp_user = nn.Embedding(n_users, half)
        self.mlp_item = nn.Embedding(n_items, half)
        widths = [2 * half, *layers[1:]]
        self.mlp = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:], strict=True))
        self.out = nn.Linear(factors + widths[-1], 1)
        for emb in (self.gmf_user, self.gmf_item, self.mlp_user, self.mlp_item):
            nn.init.normal_(emb.weight, std=0.01)

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        gmf = self.gmf_user(users) * self.gmf_item(items)
        h = torch.cat([self.mlp_user(users), self.mlp_item(items)], dim=1)
        for layer in self.mlp:
            h = F.relu(layer(h))
        return self.out(torch.cat([gmf, h], dim=1)).squeeze(1)

    def score_all(self, users: torch.Tensor) -> torch.Tensor:
        """``(len(users), n_items)`` logits of every item, without building the pairs one by one."""
        n_factors = self.gmf_user.embedding_dim
        w_gmf, w_mlp = self.out.weight[0, :n_factors], self.out.weight[0, n_factors:]
        gmf = (self.gmf_user(users) * w_gmf) @ self.gmf_item.weight.T
        if len(self.mlp) == 0:
            h_items = torch.cat(
                [self.mlp_user(users).unsqueeze(1).expand(-1, self.mlp_item.num_embeddings, -1),
                 self.mlp_item.weight.unsqueeze(0).expand(len(users), -1, -1)],
                dim=2,
            )
            return gmf + h_items @ w_mlp + self.out.bias
        first = self.mlp[0]
        half = self.mlp_user.embedding_dim
        user_part = self.mlp_user(users) @ first.weight[:, :half].T + first.bias
        item_part = self.mlp_item.weight @ first.weight[:, half:].T
        h = F.relu(user_part.unsqueeze(1) + item_part.unsqueeze(0))
        for layer in self.mlp[1:]:
            h = F.relu(layer(h))
        return gmf + h @ w_mlp + self.out.bias


def sample_negatives(binary: sp.csr_matrix, users: np.ndarray, n_per: int, gen: torch.Generator, *, max_rounds: int = 50) -> np.ndarray:
    """``(len(users), n_per)`` items drawn uniformly among each user's non-positives (vectorised rejection).

    A draw that hits a positive is redrawn, all at once, for up to ``max_rounds``
    rounds; a user with no non-positive at all keeps a positive (no negative exists).
    """
    n_items = binary.shape[1]
    out = torch.randint(n_items, (len(users), n_per), generator=gen).numpy()
    rows = np.repeat(np.asarray(users, dtype=np.int64), n_per)
    flat = out.ravel()
    for _ in range(max_rounds):
        hit = np.asarray(binary[rows, flat]).ravel() > 0
        if not hit.any():
            break
        flat[hit] = torch.randint(n_items, (int(hit.sum()),), generator=gen).numpy()
    return flat.reshape(len(users), n_per)


def _check_layers(value: Any) -> None:
    ok = isinstance(value, (list, tuple)) and len(value) >= 1 and all(isinstance(v, int) and not isinstance(v, bool) and v >= 2 for v in value)
    if not ok or value[0] % 2:
        raise ConfigError(
            "The 'layers' parameter of NCFRecommender must be a list of ints >= 2 whose first (the concatenated "
            f"user and item embeddings) is even, e.g. [64, 32, 16]. Got {value!r} instead."
        )


class NCFRecommender(NeuralModel):
    """NeuMF: GMF and MLP branches fused, trained on sampled negatives (see the module docstring).

    Parameters
    ----------
    factors:
        The GMF branch's embedding size.
    layers:
        The MLP's widths; the first is the concatenated user and item embedding
        (so half of it per side), e.g. ``[64, 32, 16]``.
    negatives:
        Negatives drawn per positive, every epoch.
    epochs, batch_size, lr, weight_decay, optimizer, random_state, num_threads, health:
        As for :class:`~recommender.families.neural_two_tower.TwoTowerRecommender`.
    """

    name: ClassVar[str] = "ncf"
    family: ClassVar[str] = "ncf"
    inputs: ClassVar[frozenset[str]] = frozenset({"interactions"})
    erasure: ClassVar[ErasureKind] = ErasureKind.retrain
    _specs: ClassVar[dict[str, ParamSpec]] = {"factors": ParamSpec(int, 1), "negatives": ParamSpec(int, 1)}

    def __init__(
        self,
        factors: int = 32,
        layers: Sequence[int] = (64, 32, 16),
        negatives: int = 4,
        epochs: int = 10,
        batch_size: int = 2048,
        lr: float = 0.003,
        weight_decay: float = 0.0,
        optimizer: str = "adam",
        random_state: int = 0,
        num_threads: int = 1,
        health: Mapping[str, Any] | None = None,
    ) -> None:
        self.factors = factors
        self.layers = layers
        self.negatives = negatives
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.optimizer = optimizer
        self.random_state = random_state
        self.num_threads = num_threads
        self.health = health

    def get_params(self) -> dict[str, Any]:
        params = super().get_params()
        if isinstance(params["layers"], tuple):
            params["layers"] = list(params["layers"])
        return params

    def _validate_params(self) -> None:
        super()._validate_params()
        _check_layers(self.layers)

    def _new_module(self, train: InteractionMatrix) -> nn.Module:
        return _NeuMF(train.n_users, train.n_items, self.factors, list(self.layers))

    def _steps(self, train: InteractionMatrix, module: nn.Module, gen: torch.Generator) -> Callable[[int], Iterable[Callable[[], torch.Tensor]]]:
        binary = sp.csr_matrix((train.matrix > 0).astype(np.float32))
        binary.sort_indices()
        coo = binary.tocoo()
        pos_users, pos_items = coo.row.astype(np.int64), coo.col.astype(np.int64)
        net: _NeuMF = module  # type: ignore[assignment]

        def steps(epoch: int) -> Iterable[Callable[[], torch.Tensor]]:
            negs = sample_negatives(binary, pos_users, self.negatives, gen)
            users = np.concatenate([pos_users, np.repeat(pos_users, self.negatives)])
            items = np.concatenate([pos_items, negs.ravel()])
            labels = np.concatenate([np.ones(len(pos_users), np.float32), np.zeros(negs.size, np.float32)])
            order = torch.randperm(len(users), generator=gen).numpy()
            users, items, labels = users[order], items[order], labels[order]
            for start in range(0, len(users), self.batch_size):
                sl = slice(start, start + self.batch_size)
                u, i, y = (torch.from_numpy(np.ascontiguousarray(a[sl])) for a in (users, items, labels))
                yield lambda u=u, i=i, y=y: F.binary_cross_entropy_with_logits(net(u, i), y)

        return steps

    def _score_rows(self, rows: np.ndarray) -> np.ndarray:
        net: _NeuMF = self.module_  # type: ignore[assignment]
        width = max(list(self.layers)[1:] or [self.layers[0]])
        step = max(1, (1 << 24) // max(1, self.train_.n_items * width))
        out = np.empty((len(rows), self.train_.n_items), dtype=np.float32)
        with torch_session(self.random_state, self.num_threads), torch.inference_mode():
            for start in range(0, len(rows), step):
                block = torch.from_numpy(np.asarray(rows[start : start + step], dtype=np.int64))
                out[start : start + len(block)] = net.score_all(block).numpy()
        return out

    def _prepare_scoring(self) -> None:
        w = self.module_.gmf_item.weight.detach().numpy().astype(np.float32)  # type: ignore[union-attr]
        self.item_space_ = w / np.maximum(np.linalg.norm(w, axis=1, keepdims=True), 1e-12)

    def explain(self, user_id: str, item_ids: Sequence[str], *, n_history: int = 3) -> list[list[ModelTag]]:
        """``latent_match`` tags: the history items nearest each item in the GMF item space (cosine), not exact."""
        return self._explain_latent(
            user_id,
            item_ids,
            n_history=n_history,
            space=lambda: self.item_space_,
            scores=lambda row, cols: self._score_rows(np.array([row]))[0, cols],
            score_name="logit",
        )


register_family(
    Family(
        name="ncf",
        build=NCFRecommender,
        description="Neural collaborative filtering (NeuMF: GMF + MLP, He et al. 2017) on sampled negatives",
        inputs=NCFRecommender.inputs,
        erasure=ErasureKind.retrain,
        extra="neural",
        default_params={},
        small_params={"factors": 8, "layers": [16, 8], "epochs": 3, "batch_size": 512},
        broken_params={"negatives": 0},
    )
)
