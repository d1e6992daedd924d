"""Session-based next-item recommendation (the ``session`` family): GRU4Rec (Hidasi et al. 2016) over sessions.

The events given to :meth:`SessionRecommender.fit` are cut into sessions:

* by their ``session_id`` when the events carry one (the synthetic data and
  most event logs do);
* otherwise by a time gap: a user's next event more than
  ``session_gap_minutes`` after the previous one starts a new session
  (``sessions_source_`` says which rule applied).

Only events whose (user, item) pair is a positive of the training matrix are
kept (the model learns from what the matrix counts, nothing more), in time
order; repeats of one item in a row (a view, click and purchase of one item)
collapse to one step. A GRU reads each session and, at every step, scores the
next item against every item (full softmax cross-entropy; the output layer
shares the item embeddings). A user's list comes from their last session in the
training events: the GRU's state after it, scored against every item.
:meth:`SessionRecommender.recommend_session` ranks items for any session (an
anonymous visitor's too).

Without events, a user's history in the matrix (in column order: no time) is
read as one session; ``sessions_source_ == "matrix"`` says so and the model
learns co-occurrence, not sequence. Tags are ``session_context``: the session
items the list follows from, ranked by how much each moves the item's score
when left out (a measured influence, not an exact decomposition). Erasure
retrains (see :mod:`recommender.families._torch_common`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn

from recommender.data import InteractionMatrix, event_times
from recommender.errors import ConfigError, DataError
from recommender.families._torch_common import NeuralModel, ParamSpec, torch_session
from recommender.family import ErasureKind, Family, ForgetOutcome, ModelTag, register_family
from recommender.scoring import mask_seen, top_k_rows

__all__ = ["SessionRecommender", "sessions_from_events"]


class _GRU4Rec(nn.Module):
    def __init__(self, n_items: int, dim: int, hidden: int) -> None:
        super().__init__()
        self.pad = n_items
        self.item = nn.Embedding(n_items + 1, dim, padding_idx=n_items)
        self.gru = nn.GRU(dim, hidden, batch_first=True)
        self.out = nn.Linear(hidden, dim)
        self.bias = nn.Parameter(torch.zeros(n_items))
        nn.init.normal_(self.item.weight, std=0.05)
        with torch.no_grad():
            self.item.weight[n_items].zero_()

    def states(self, seqs: torch.Tensor) -> torch.Tensor:
        """``(batch, length, dim)`` query vectors after each step."""
        h, _ = self.gru(self.item(seqs))
        return self.out(h)

    def logits(self, queries: torch.Tensor) -> torch.Tensor:
        return queries @ self.item.weight[: self.pad].T + self.bias

    def last_query(self, seqs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The query after each sequence's last real step; a zero-length sequence gets the empty state's."""
        q = self.states(seqs)
        idx = (lengths - 1).clamp(min=0)
        last = q[torch.arange(len(seqs)), idx]
        empty = self.out(torch.zeros(1, self.gru.hidden_size))
        return torch.where((lengths > 0).unsqueeze(1), last, empty)


def sessions_from_events(
    events: pd.DataFrame, train: InteractionMatrix, *, gap_minutes: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """``(user_rows, item_cols, session_codes, source)`` of the positive events in time order, repeats collapsed.

    ``source`` is ``"session_id"`` or ``"time_gap"``. Raises :class:`DataError`
    naming a missing column.
    """
    missing = [c for c in ("user_id", "item_id", "timestamp") if c not in events.columns]
    if missing:
        raise DataError(f"SessionRecommender.fit: events miss column(s) {missing}; they need user_id, item_id, timestamp (session_id optional)")
    users = train.user_index(events["user_id"].astype(str).to_numpy())
    items = train.item_index(events["item_id"].astype(str).to_numpy())
    known = (users >= 0) & (items >= 0)
    positive = np.zeros(len(events), dtype=bool)
    if known.any():
        positive[known] = np.asarray(train.matrix[users[known], items[known]]).ravel() > 0
    times = event_times(events, source="SessionRecommender.fit events").astype("datetime64[ns]").astype(np.int64)
    has_session = "session_id" in events.columns and bool(events["session_id"].notna().any())
    keep = positive & (times != np.iinfo(np.int64).min)
    users, items, times = users[keep], items[keep], times[keep]
    if has_session:
        raw = events["session_id"].to_numpy(dtype=object)[keep]
        codes, _ = pd.factorize(pd.Series(raw, dtype="string").fillna("\x00missing"))
        order = np.lexsort((items, times, codes, users))
        users, items, times, codes = users[order], items[order], times[order], codes[order]
        source = "session_id"
    else:
        order = np.lexsort((items, times, users))
        users, items, times = users[order], items[order], times[order]
        gap = np.diff(times, prepend=times[:1]) > int(gap_minutes * 60e9)
        new = np.ones(len(users), dtype=bool)
        new[1:] = (users[1:] != users[:-1]) | gap[1:]
        codes = np.cumsum(new) - 1
        source = "time_gap"
    # sessions in the time order of their first event, per user; repeats of one item in a row collapse
    if len(users):
        repeat = np.zeros(len(users), dtype=bool)
        repeat[1:] = (users[1:] == users[:-1]) & (codes[1:] == codes[:-1]) & (items[1:] == items[:-1])
        users, items, codes, times = users[~repeat], items[~repeat], codes[~repeat], times[~repeat]
        start = pd.Series(times).groupby(codes).transform("min").to_numpy()
        order = np.lexsort((np.arange(len(users)), start, users))
        users, items, codes = users[order], items[order], codes[order]
        codes = pd.factorize(codes)[0]
    return users.astype(np.int64), items.astype(np.int64), np.asarray(codes, dtype=np.int64), source


def _padded(items: np.ndarray, starts: np.ndarray, ends: np.ndarray, length: int, pad: int) -> tuple[np.ndarray, np.ndarray]:
    """Sequences ``items[starts[j]:ends[j]]`` cut to their last ``length`` items, right-padded: ``(seqs, lengths)``."""
    starts = np.maximum(starts, ends - length)
    lengths = ends - starts
    seqs = np.full((len(lengths), max(length, 1)), pad, dtype=np.int64)
    col = np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    seqs[np.repeat(np.arange(len(lengths)), lengths), col] = items[np.repeat(starts, lengths) + col]
    return seqs, lengths.astype(np.int64)


class SessionRecommender(NeuralModel):
    """GRU4Rec next-item recommendation over sessions (see the module docstring).

    Parameters
    ----------
    dim:
        Item embedding size (shared by input and output).
    hidden:
        GRU state size.
    max_len:
        Longest sequence read (its last ``max_len`` items).
    sequences:
        ``session``: the GRU learns within sessions and a user's list follows
        their last session (GRU4Rec as published); ``user``: it learns along
        each user's whole time-ordered history (sessions one after another,
        in windows of ``max_len + 1``) and a user's list follows their latest
        ``max_len`` items. Sessions are cut the same way in both.
    session_gap_minutes:
        The gap that starts a new session when the events carry no ``session_id``.
    epochs, batch_size, lr, weight_decay, optimizer, random_state, num_threads, health:
        Training (``batch_size`` sessions per step); see
        :class:`~recommender.families.neural_two_tower.TwoTowerRecommender`.
    """

    name: ClassVar[str] = "session"
    family: ClassVar[str] = "session"
    inputs: ClassVar[frozenset[str]] = frozenset({"interactions", "session_id", "timestamp"})
    erasure: ClassVar[ErasureKind] = ErasureKind.retrain
    _specs: ClassVar[dict[str, ParamSpec]] = {
        "dim": ParamSpec(int, 1),
        "hidden": ParamSpec(int, 1),
        "max_len": ParamSpec(int, 2),
        "session_gap_minutes": ParamSpec((int, float), 0, low_inclusive=False),
        "sequences": ParamSpec(str, choices=("session", "user")),
    }

    def __init__(
        self,
        dim: int = 64,
        hidden: int = 100,
        max_len: int = 20,
        session_gap_minutes: float = 30.0,
        sequences: str = "session",
        epochs: int = 10,
        batch_size: int = 256,
        lr: float = 0.005,
        weight_decay: float = 0.0,
        optimizer: str = "adam",
        random_state: int = 0,
        num_threads: int = 1,
        health: Mapping[str, Any] | None = None,
    ) -> None:
        self.dim = dim
        self.hidden = hidden
        self.max_len = max_len
        self.session_gap_minutes = session_gap_minutes
        self.sequences = sequences
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.optimizer = optimizer
        self.random_state = random_state
        self.num_threads = num_threads
        self.health = health

    def fit(self, train: InteractionMatrix, *, show_progress: bool = False, events: pd.DataFrame | None = None) -> SessionRecommender:
        """Learn from the sessions of ``events`` restricted to ``train``'s positives (or, without events, from ``train`` alone)."""
        if events is not None and not isinstance(events, pd.DataFrame):
            raise ConfigError(f"SessionRecommender.fit: events must be a pandas DataFrame, got {type(events).__name__}")
        self._given_events = events
        try:
            return super().fit(train, show_progress=show_progress)
        finally:
            self._given_events = None

    # -- sessions -----------------------------------------------------------------
    def _prepare_side(self, train: InteractionMatrix) -> None:
        self.side_ = {}
        events = getattr(self, "_given_events", None)
        if events is None:
            coo = train.matrix.tocoo()
            order = np.lexsort((coo.col, coo.row))
            users, items = coo.row[order].astype(np.int64), coo.col[order].astype(np.int64)
            self._set_sessions(users, items, users.copy(), "matrix")
        else:
            self._set_sessions(*sessions_from_events(events, train, gap_minutes=float(self.session_gap_minutes)))

    def _set_sessions(self, users: np.ndarray, items: np.ndarray, codes: np.ndarray, source: str) -> None:
        self.seq_users_, self.seq_items_, self.seq_codes_, self.sessions_source_ = users, items, codes, source

    def _bounds(self, *, by_user: bool = False) -> np.ndarray:
        """Start offsets of every session (or, ``by_user``, every user's history) in ``seq_*``, plus the end."""
        change = np.ones(len(self.seq_codes_), dtype=bool)
        change[1:] = self.seq_users_[1:] != self.seq_users_[:-1]
        if not by_user:
            change[1:] |= self.seq_codes_[1:] != self.seq_codes_[:-1]
        return np.append(np.flatnonzero(change), len(self.seq_codes_)).astype(np.int64)

    def _training_spans(self) -> tuple[np.ndarray, np.ndarray]:
        """``(starts, ends)`` of the training sequences: sessions, or windows of ``max_len + 1`` along each user's
        history overlapping by one item (so every step of the history is a training target once)."""
        if self.sequences == "session":
            bounds = self._bounds()
            return bounds[:-1], bounds[1:]
        bounds = self._bounds(by_user=True)
        a, b = bounds[:-1], bounds[1:]
        n_windows = np.where(b - a >= 2, -(-(b - a - 1) // self.max_len), 0)
        starts = np.repeat(a, n_windows) + self.max_len * (np.arange(int(n_windows.sum())) - np.repeat(np.cumsum(n_windows) - n_windows, n_windows))
        ends = np.minimum(starts + self.max_len + 1, np.repeat(b, n_windows))
        return starts, ends

    def _side_without(self, keep_rows: np.ndarray, keep_cols: np.ndarray) -> dict[str, Any]:
        """The kept users' sessions as an events table (re-read by :meth:`fit` on the reduced matrix)."""
        if self.sessions_source_ == "matrix":
            return {}
        keep = np.isin(self.seq_users_, keep_rows)
        users, items, codes = self.seq_users_[keep], self.seq_items_[keep], self.seq_codes_[keep]
        # positions stand in for times: the order is all that is kept, and it is kept exactly
        return {
            "events": pd.DataFrame(
                {
                    "user_id": self.train_.user_ids[users].astype(str),
                    "item_id": self.train_.item_ids[items].astype(str),
                    "timestamp": pd.to_datetime(np.arange(len(users)), unit="s", utc=True),
                    "session_id": pd.Series(codes.astype(str), dtype="string"),
                }
            )
        }

    def _side_arrays(self) -> dict[str, np.ndarray]:
        return {"seq_users": self.seq_users_, "seq_items": self.seq_items_, "seq_codes": self.seq_codes_}

    def _module_meta(self) -> dict[str, Any]:
        return {"sessions_source": self.sessions_source_}

    def _load_side(self, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> None:
        self.side_ = {}
        self._set_sessions(arrays["seq_users"], arrays["seq_items"], arrays["seq_codes"], str(meta["module"]["sessions_source"]))

    # -- network and training -----------------------------------------------------
    def _new_module(self, train: InteractionMatrix) -> nn.Module:
        return _GRU4Rec(train.n_items, self.dim, self.hidden)

    def _steps(self, train: InteractionMatrix, module: nn.Module, gen: torch.Generator) -> Callable[[int], Iterable[Callable[[], torch.Tensor]]]:
        net: _GRU4Rec = module  # type: ignore[assignment]
        seqs, lengths = _padded(self.seq_items_, *self._training_spans(), self.max_len + 1, train.n_items)
        usable = lengths >= 2
        seqs, lengths = seqs[usable], lengths[usable]
        if len(seqs) == 0:
            raise DataError(
                "SessionRecommender.fit: no session has two or more distinct positive items in a row, so there is no "
                f"next item to learn (sessions read by {self.sessions_source_})"
            )
        inputs = torch.from_numpy(seqs[:, :-1].copy())
        targets = torch.from_numpy(seqs[:, 1:].copy())
        targets[targets == train.n_items] = -100  # padding is no target

        by_length = torch.from_numpy(np.argsort(lengths, kind="stable"))

        def steps(epoch: int) -> Iterable[Callable[[], torch.Tensor]]:
            # batches of sessions of similar length (little padding), shuffled within equal lengths and in batch order
            noise = torch.rand(len(inputs), generator=gen)
            order = by_length[torch.from_numpy(np.lexsort((noise.numpy(), lengths[by_length.numpy()])))]
            batches = list(torch.split(order, self.batch_size))
            for b in torch.randperm(len(batches), generator=gen).tolist():
                chosen = batches[b]
                x, y = inputs[chosen], targets[chosen]
                width = int((y != -100).sum(dim=1).max())
                x, y = x[:, :width], y[:, :width]

                def loss(x: torch.Tensor = x, y: torch.Tensor = y) -> torch.Tensor:
                    logits = net.logits(net.states(x))
                    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), ignore_index=-100)

                yield loss

        return steps

    def _last_sessions(self) -> tuple[np.ndarray, np.ndarray]:
        """Every user's last session (or latest ``max_len`` items) as a padded ``(n_users, max_len)`` matrix and its
        lengths (0: nothing)."""
        n_users, pad = self.train_.n_users, self.train_.n_items
        bounds = self._bounds(by_user=self.sequences == "user")
        seqs, lengths = _padded(self.seq_items_, bounds[:-1], bounds[1:], self.max_len, pad)
        owners = self.seq_users_[bounds[:-1]] if len(bounds) > 1 else np.array([], dtype=np.int64)
        last = np.full(n_users, -1, dtype=np.int64)
        last[owners] = np.arange(len(owners))  # sessions are in time order per user: the last write wins
        out = np.full((n_users, seqs.shape[1]), pad, dtype=np.int64)
        out_len = np.zeros(n_users, dtype=np.int64)
        has = last >= 0
        out[has], out_len[has] = seqs[last[has]], lengths[last[has]]
        return out, out_len

    def _queries(self, seqs: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        net: _GRU4Rec = self.module_  # type: ignore[assignment]
        out = []
        with torch_session(self.random_state, self.num_threads), torch.inference_mode():
            for start in range(0, len(seqs), 4096):
                s, n = seqs[start : start + 4096], lengths[start : start + 4096]
                out.append(net.last_query(torch.from_numpy(np.ascontiguousarray(s)), torch.from_numpy(n)).numpy())
        return np.vstack(out) if out else np.zeros((0, self.dim), dtype=np.float32)

    def _prepare_scoring(self) -> None:
        net: _GRU4Rec = self.module_  # type: ignore[assignment]
        self.context_, self.context_lengths_ = self._last_sessions()
        self.user_queries_ = self._queries(self.context_, self.context_lengths_).astype(np.float32)
        self.item_vectors_ = net.item.weight[: net.pad].detach().numpy().astype(np.float32)
        self.item_bias_ = net.bias.detach().numpy().astype(np.float32)

    def _score_rows(self, rows: np.ndarray) -> np.ndarray:
        return self.user_queries_[rows] @ self.item_vectors_.T + self.item_bias_

    def recommend_session(self, item_ids: Sequence[str], k: int = 10, *, filter_seen: bool = True) -> tuple[list[str], np.ndarray]:
        """The ``k`` items most likely next after the session ``item_ids`` (in order; unknown items are skipped).

        Returns ``(item ids, scores)``; with ``filter_seen`` the session's own items are left out.
        """
        self.check_fitted("recommend_session")
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ConfigError(f"The 'k' parameter of recommend_session must be an int in the range [1, inf). Got {k!r} instead.")
        cols = self.train_.item_index(list(item_ids)) if len(item_ids) else np.array([], dtype=np.int64)
        cols = cols[cols >= 0][-self.max_len :]
        seq = np.full((1, self.max_len), self.train_.n_items, dtype=np.int64)
        seq[0, : len(cols)] = cols
        scores = self._queries(seq, np.array([len(cols)])) @ self.item_vectors_.T + self.item_bias_
        scores = scores.astype(np.float32)
        if filter_seen and len(cols):
            mask_seen(scores, sp.csr_matrix((np.ones(len(cols)), (np.zeros(len(cols), dtype=np.int64), cols)), shape=(1, self.train_.n_items)), np.array([0]))
        idx, val = top_k_rows(scores, int(k))
        ok = idx[0] >= 0
        return [str(self.train_.item_ids[i]) for i in idx[0][ok]], val[0][ok]

    # -- tags ---------------------------------------------------------------------
    def explain(self, user_id: str, item_ids: Sequence[str], *, n_context: int = 3) -> list[list[ModelTag]]:
        """``session_context`` tags naming the items of the user's last session the list follows from.

        Each session item's influence on an item is the drop in the item's
        score when that session item is left out of the session (one GRU pass
        per left-out item); the ``n_context`` most influential are named.
        Measured, not exact (a GRU's score does not decompose over its inputs).
        """
        self.check_fitted("explain")
        cols = self._known_items(item_ids)
        row = int(self.train_.user_index(user_id)[0])
        if self.fallback_mask(np.array([row]))[0]:  # unknown, or known with an empty history
            return self._fallback_tags(len(cols), self.popularity_, cols)
        length = int(self.context_lengths_[row])
        if length == 0:
            text = "Often chosen first (we have no session of yours to follow from)."
            return [[ModelTag(kind="session_context", text=text, exact=False, evidence={"session_items": 0})] for _ in cols]
        session = self.context_[row, :length]
        # the full session and each leave-one-out variant, in one batch
        variants = np.full((length + 1, self.context_.shape[1]), self.train_.n_items, dtype=np.int64)
        variants[0, :length] = session
        for j in range(length):
            rest = np.delete(session, j)
            variants[j + 1, : length - 1] = rest
        lengths = np.array([length] + [length - 1] * length, dtype=np.int64)
        scores = self._queries(variants, lengths) @ self.item_vectors_[cols].T + self.item_bias_[cols]
        influence = scores[0][None, :] - scores[1:]  # (length, n_items listed)
        names = [str(self.train_.item_ids[c]) for c in session]
        where = "in your last session" if self.sequences == "session" else "among your latest items"
        out = []
        for n in range(len(cols)):
            order = np.argsort(-influence[:, n], kind="stable")[:n_context]
            named = tuple(names[j] for j in order)
            out.append(
                [
                    ModelTag(
                        kind="session_context",
                        text=f"Often comes next after {', '.join(named)} {where}.",
                        items=named,
                        exact=False,
                        evidence={
                            "influence": [round(float(influence[j, n]), 4) for j in order],
                            "session_items": length,
                            "sessions_from": self.sessions_source_,
                        },
                    )
                ]
            )
        return out

    def forget(self, user_ids: Sequence[str]) -> ForgetOutcome:
        """Retrain without ``user_ids`` on the other users' sessions, cut as before (see :meth:`NeuralModel.forget`)."""
        source = getattr(self, "sessions_source_", None)
        outcome = super().forget(user_ids)
        if source is not None:
            self.sessions_source_ = source  # the kept sessions are passed on with ids; they were cut by this rule
        return outcome

    def training_report(self) -> dict[str, Any]:
        report = super().training_report()
        report["sessions_from"] = self.sessions_source_
        report["sessions"] = int(len(self._bounds()) - 1)
        return report


register_family(
    Family(
        name="session",
        build=SessionRecommender,
        description="Session-based next-item recommendation (GRU4Rec) over session_id, or a time gap when sessions are not logged",
        inputs=SessionRecommender.inputs,
        erasure=ErasureKind.retrain,
        extra="neural",
        default_params={},
        small_params={"dim": 16, "hidden": 16, "epochs": 3, "batch_size": 64},
        broken_params={"max_len": 1},
    )
)
