"""What the neural families share: seeded CPU sessions, the watched training loop, scoring, save and load.

Imports :mod:`torch` at the top: without the ``neural`` extra the families
that import this module fail at import and :func:`recommender.family.unavailable_families`
lists them with the reason.

* **Determinism**: :func:`torch_session` seeds a private copy of torch's random
  state (``torch.random.fork_rng``: the caller's stream is untouched), turns on
  ``torch.use_deterministic_algorithms`` and fixes the thread count, and
  restores all three afterwards. The same data, parameters, seed, thread count
  and library versions give the same weights, bit for bit.
* **Watched training**: :func:`run_training` records every epoch's loss and
  gradient norms in a :class:`~recommender.training_health.TrainingLog` and
  checks it after each epoch (:func:`~recommender.training_health.check_training`);
  an unstable run raises :class:`~recommender.training_health.TrainingInstabilityError`
  or is flagged, as the model's ``health`` parameter says.
* **No pickle**: a model is saved as ``.npz`` (``allow_pickle=False``) holding
  its ``state_dict`` tensors as numpy arrays, the training matrix, the ids and
  JSON metadata; never ``torch.save``. ``version_id_`` is a SHA-256 over the
  family, the data hash, the parameters and the weights' bytes, checked again
  on load.
* **Erasure by retraining**: a neural model's weights mix every subject's
  gradients; :meth:`NeuralModel.forget` refits on the data without the subjects
  (same parameters, same seed), so the model afterwards is the one trained
  without them, and says that a retrain was what it took.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import platform
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from importlib.metadata import version as _pkg_version
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from recommender.data import InteractionMatrix
from recommender.errors import ConfigError, DataError
from recommender.family import ErasureKind, ForgetOutcome, GovernedModel, ModelTag, fallback_tag, read_model_file, save_state, train_arrays, train_from_arrays, without_users
from recommender.scoring import block_rows, mask_seen, top_k_rows
from recommender.training_health import HealthConfig, TrainingInstabilityError, TrainingLog, check_training

__all__ = [
    "NeuralModel",
    "ParamSpec",
    "csr_bags",
    "library_versions",
    "run_training",
    "torch_session",
]


@functools.cache
def _library_versions() -> tuple[tuple[str, str], ...]:
    return tuple(
        {"torch": torch.__version__, "numpy": np.__version__, "scipy": _pkg_version("scipy"), "python": platform.python_version()}.items()
    )


def library_versions() -> dict[str, str]:
    """Versions of the libraries that determine a neural model's numbers."""
    return dict(_library_versions())


@contextmanager
def torch_session(seed: int, num_threads: int) -> Iterator[torch.Generator]:
    """A seeded, deterministic, fixed-thread block; yields the generator to draw batches from.

    Module initialisation inside the block draws from torch's global stream,
    which is forked (restored on exit), so the caller's random state is
    unchanged. Deterministic algorithms and the thread count are restored too.
    """
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        torch.use_deterministic_algorithms(True)
        torch.set_num_threads(num_threads)
        try:
            yield torch.Generator().manual_seed(seed)
        finally:
            torch.set_num_threads(threads)
            torch.use_deterministic_algorithms(deterministic)


@contextmanager
def _threads(num_threads: int) -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(num_threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def run_training(
    module: nn.Module,
    steps: Callable[[int], Iterable[Callable[[], torch.Tensor]]],
    *,
    epochs: int,
    lr: float,
    weight_decay: float,
    optimizer: str,
    health: HealthConfig,
    name: str,
    show_progress: bool = False,
) -> TrainingLog:
    """Train ``module`` for ``epochs`` and return the watched log.

    ``steps(epoch)`` yields one closure per mini-batch that computes the batch's
    loss. Each step's total gradient L2 norm is measured (before the update; no
    clipping hides it). After each epoch the log is checked; at the first sign
    of instability training stops and, with ``health.on_instability == "raise"``,
    :class:`TrainingInstabilityError` is raised naming it.
    """
    params = [p for p in module.parameters() if p.requires_grad]
    opt: torch.optim.Optimizer
    if optimizer == "adam":
        opt = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    else:
        opt = torch.optim.SGD(params, lr=lr, weight_decay=weight_decay)
    log = TrainingLog()
    epoch_iter: Iterable[int] = range(epochs)
    if show_progress:
        from tqdm.auto import tqdm

        epoch_iter = tqdm(epoch_iter, desc=f"{name} epochs")
    module.train()
    for epoch in epoch_iter:
        losses: list[float] = []
        norms: list[float] = []
        for step in steps(epoch):
            opt.zero_grad(set_to_none=True)
            loss = step()
            value = float(loss.detach())
            if not math.isfinite(value):
                losses.append(value)
                norms.append(math.nan)
                break
            loss.backward()
            norm = float(torch.nn.utils.clip_grad_norm_(params, max_norm=math.inf))
            losses.append(value)
            norms.append(norm)
            if not math.isfinite(norm):
                break
            opt.step()
        log.add_epoch(np.asarray(losses), np.asarray(norms))
        found = check_training(log, health)
        if found is not None:
            log.instability = found
            log.stopped_early = epoch < epochs - 1
            if health.on_instability == "raise":
                raise TrainingInstabilityError(
                    f"{name}: training is unstable ({found.kind}) - {found.detail}; lower the learning rate "
                    f"(lr={lr:g}) or the batch size, or set health.on_instability='flag' to keep the model flagged",
                    log,
                )
            break
    module.eval()
    return log


def csr_bags(matrix: sp.csr_matrix, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(indices, offsets)`` of the stored columns of ``rows``, as ``nn.EmbeddingBag`` reads them (no Python loop)."""
    starts = matrix.indptr[rows]
    lengths = matrix.indptr[rows + 1] - starts
    offsets = np.zeros(len(rows), dtype=np.int64)
    np.cumsum(lengths[:-1], out=offsets[1:])
    total = int(lengths.sum())
    positions = np.arange(total, dtype=np.int64) - np.repeat(offsets, lengths) + np.repeat(starts, lengths)
    return matrix.indices[positions].astype(np.int64), offsets


class ParamSpec:
    """One constructor parameter's type and range, for clear errors before any training."""

    def __init__(
        self,
        kind: type | tuple[type, ...],
        low: float | None = None,
        *,
        low_inclusive: bool = True,
        high: float | None = None,
        choices: Sequence[Any] | None = None,
        optional: bool = False,
    ) -> None:
        self.kind, self.low, self.low_inclusive, self.high = kind, low, low_inclusive, high
        self.choices, self.optional = choices, optional

    def check(self, owner: str, name: str, value: Any) -> None:
        """Raise :class:`ConfigError` naming the parameter, its range and the value when ``value`` is out of it."""
        if value is None and self.optional:
            return
        if self.choices is not None:
            # by type and value: 1 is not True, and 1.0 is not "adam"
            if not any(type(value) is type(c) and value == c for c in self.choices):
                raise ConfigError(f"The '{name}' parameter of {owner} must be one of {list(self.choices)}. Got {value!r} instead.")
            return
        kinds = self.kind if isinstance(self.kind, tuple) else (self.kind,)
        type_name = "an int" if kinds == (int,) else "a float"
        ok = isinstance(value, kinds) and not isinstance(value, bool)
        if ok and isinstance(value, float) and not math.isfinite(value):
            ok = False
        if ok and self.low is not None:
            ok = value >= self.low if self.low_inclusive else value > self.low
        if ok and self.high is not None:
            ok = value <= self.high
        if not ok:
            bracket = "[" if self.low_inclusive else "("
            high = "inf)" if self.high is None else f"{self.high}]"
            low = "-inf" if self.low is None else self.low
            raise ConfigError(
                f"The '{name}' parameter of {owner} must be {type_name} in the range {bracket}{low}, {high}. Got {value!r} instead."
            )


_COMMON_SPECS: dict[str, ParamSpec] = {
    "epochs": ParamSpec(int, 1),
    "batch_size": ParamSpec(int, 1),
    "lr": ParamSpec((int, float), 0, low_inclusive=False),
    "weight_decay": ParamSpec((int, float), 0),
    "optimizer": ParamSpec(str, choices=("adam", "sgd")),
    "random_state": ParamSpec(int, 0),
    "num_threads": ParamSpec(int, 1),
}


class NeuralModel(GovernedModel):
    """The shared body of the neural families (subclasses add the network, its batches and its tags).

    A subclass sets ``name``/``family``, ``_specs`` (its own parameters' ranges),
    and implements :meth:`_new_module`, :meth:`_steps` (the mini-batch losses of
    an epoch), :meth:`_prepare_scoring` (caches for serving, from the trained
    module), :meth:`_score_rows` and :meth:`explain`. Side inputs (item
    categories, events) are passed to :meth:`fit` and kept in ``side_``.
    """

    erasure: ClassVar[ErasureKind] = ErasureKind.retrain
    _specs: ClassVar[dict[str, ParamSpec]] = {}
    _format: ClassVar[str] = "recgov.neural.v1"

    module_: nn.Module
    training_log_: TrainingLog
    data_hash_: str
    library_versions_: dict[str, str]
    fit_seconds_: float

    # -- parameters -------------------------------------------------------------
    def get_params(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self._param_names()}

    @classmethod
    def _param_names(cls) -> list[str]:
        import inspect

        return [p for p in inspect.signature(cls.__init__).parameters if p != "self"]

    def _health(self) -> HealthConfig:
        value = getattr(self, "health", None)
        if value is None:
            return HealthConfig()
        if isinstance(value, HealthConfig):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(f"The 'health' parameter of {type(self).__name__} must be a mapping of HealthConfig fields. Got {value!r} instead.")
        from pydantic import ValidationError

        try:
            return HealthConfig(**value)
        except ValidationError as err:
            first = err.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise ConfigError(f"{type(self).__name__}.health.{where}: {first['msg']} (got {first.get('input')!r})") from None

    def _validate_params(self) -> None:
        owner = type(self).__name__
        for name in self._param_names():
            spec = self._specs.get(name) or _COMMON_SPECS.get(name)
            if spec is not None:
                spec.check(owner, name, getattr(self, name))
        self._health()

    # -- to implement -----------------------------------------------------------
    def _new_module(self, train: InteractionMatrix) -> nn.Module:
        raise NotImplementedError

    def _steps(self, train: InteractionMatrix, module: nn.Module, gen: torch.Generator) -> Callable[[int], Iterable[Callable[[], torch.Tensor]]]:
        raise NotImplementedError

    def _prepare_scoring(self) -> None:
        """Caches for serving, from ``module_`` (called after training and after loading)."""

    def _score_rows(self, rows: np.ndarray) -> np.ndarray:
        """``(len(rows), n_items)`` float32 scores of training rows ``rows``."""
        raise NotImplementedError

    def _prepare_side(self, train: InteractionMatrix) -> None:
        """Check and align the side inputs given to :meth:`fit` with ``train`` (set ``side_``)."""
        self.side_: dict[str, Any] = {}

    def _side_without(self, keep_rows: np.ndarray, keep_cols: np.ndarray) -> dict[str, Any]:
        """Keyword arguments for :meth:`fit` that refit on the rows ``keep_rows`` and item columns ``keep_cols`` only."""
        return {}

    def _side_arrays(self) -> dict[str, np.ndarray]:
        """Side data to save with the model (no object arrays)."""
        return {}

    def _load_side(self, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> None:
        self.side_ = {}

    def _module_meta(self) -> dict[str, Any]:
        """What :meth:`_new_module` needs besides ``train`` to rebuild the network on load."""
        return {}

    # -- fitting ----------------------------------------------------------------
    def _fit(self, train: InteractionMatrix, *, show_progress: bool) -> None:
        self._validate_params()
        self._prepare_side(train)
        started = time.perf_counter()
        with torch_session(self.random_state, self.num_threads) as gen:
            module = self._new_module(train)
            log = run_training(
                module,
                self._steps(train, module, gen),
                epochs=self.epochs,
                lr=float(self.lr),
                weight_decay=float(self.weight_decay),
                optimizer=self.optimizer,
                health=self._health(),
                name=type(self).__name__,
                show_progress=show_progress,
            )
        self.fit_seconds_ = time.perf_counter() - started
        self.module_ = module
        self.training_log_ = log
        self.data_hash_ = train.content_hash()
        self.library_versions_ = library_versions()
        self.train_ = train  # scoring caches may read it; Recommender.fit sets it again
        self._prepare_scoring()
        self.version_id_ = self._version_id()

    def _state_arrays(self) -> dict[str, np.ndarray]:
        return {key: value.detach().cpu().numpy().copy() for key, value in self.module_.state_dict().items()}

    def _version_id(self) -> str:
        h = hashlib.sha256(f"recgov.neural-version.v1\x00{self.name}\x00".encode())
        doc = {"data": self.data_hash_, "params": self._json_params(), "libraries": self.library_versions_}
        h.update(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode())
        for key, array in sorted(self._state_arrays().items()):
            h.update(f"{key}:{array.dtype.str}:{array.shape}\x00".encode())
            h.update(np.ascontiguousarray(array).tobytes())
        return f"{self.name}-{h.hexdigest()[:24]}"

    def _json_params(self) -> dict[str, Any]:
        params = self.get_params()
        if isinstance(params.get("health"), HealthConfig):
            params["health"] = params["health"].model_dump()
        return params

    # -- serving ----------------------------------------------------------------
    def _recommend_known(self, user_index: np.ndarray, k: int, *, filter_seen: bool) -> tuple[np.ndarray, np.ndarray]:
        step = block_rows(self.train_.n_items)
        out_idx = np.empty((len(user_index), k), dtype=np.int64)
        out_val = np.empty((len(user_index), k), dtype=np.float32)
        for start in range(0, len(user_index), step):
            rows = user_index[start : start + step]
            scores = np.array(self._score_rows(rows), dtype=np.float32, copy=True)
            if filter_seen:
                mask_seen(scores, self.train_.matrix, rows)
            out_idx[start : start + len(rows)], out_val[start : start + len(rows)] = top_k_rows(scores, k)
        return out_idx, out_val

    def training_report(self) -> dict[str, Any]:
        """The run's loss trajectory, gradient norms, stability verdict and fit time (JSON-ready)."""
        self.check_fitted("training_report")
        return {"family": self.family, "version_id": self.version_id_, "fit_seconds": round(getattr(self, "fit_seconds_", 0.0), 3), **self.training_log_.to_dict()}

    def _known_items(self, item_ids: Sequence[str]) -> np.ndarray:
        cols = self.train_.item_index(list(item_ids))
        if (cols < 0).any():
            unknown = [str(item_ids[i]) for i in np.flatnonzero(cols < 0)[:5]]
            raise ConfigError(f"{type(self).__name__}.explain: item(s) {unknown} are not in the model's catalogue")
        return cols

    @staticmethod
    def _fallback_tags(n: int, popularity: np.ndarray, cols: np.ndarray) -> list[list[ModelTag]]:
        """Tags for a user the model does not know: the list is the popularity ranking."""
        return [[fallback_tag(popularity[c])] for c in cols[:n]]

    def _explain_latent(
        self,
        user_id: str,
        item_ids: Sequence[str],
        *,
        n_history: int,
        space: Callable[[], np.ndarray],
        scores: Callable[[int, np.ndarray], np.ndarray],
        score_name: str,
    ) -> list[list[ModelTag]]:
        """``latent_match`` tags (not exact) naming the (up to ``n_history``) history items nearest each item
        in the learned item ``space`` (called once fitted), with the model's score for it (``scores(row,
        cols)``) as ``evidence[score_name]``; a user the model does not know gets ``popular`` tags."""
        self.check_fitted("explain")
        cols = self._known_items(item_ids)
        row = int(self.train_.user_index(user_id)[0])
        if self.fallback_mask(np.array([row]))[0]:  # unknown, or known with an empty history
            return self._fallback_tags(len(cols), self.popularity_, cols)
        m = self.train_.matrix
        history = m.indices[m.indptr[row] : m.indptr[row + 1]]
        vectors = space()
        sims = vectors[cols] @ vectors[history].T if len(history) else np.zeros((len(cols), 0))
        values = scores(row, cols)
        out = []
        for n in range(len(cols)):
            order = np.argsort(-sims[n], kind="stable")[:n_history]
            named = [str(self.train_.item_ids[history[j]]) for j in order]
            text = (
                f"Close, in what we learned about items, to {', '.join(named)} that you engaged with."
                if named
                else "Matches the tastes learned from your profile."
            )
            evidence = {"similarity": [round(float(sims[n, j]), 4) for j in order], score_name: round(float(values[n]), 4)}
            out.append([ModelTag(kind="latent_match", text=text, items=tuple(named), exact=False, evidence=evidence)])
        return out

    # -- erasure ----------------------------------------------------------------
    def forget(self, user_ids: Sequence[str]) -> ForgetOutcome:
        """Retrain without ``user_ids`` (same parameters and seed): the model afterwards is the one trained without them.

        Gradient training spreads every subject through all the weights, so no
        exact or measured-residual removal is claimed: the retrain the ``retrain``
        erasure kind owes is run here, synchronously, and reported in ``detail``
        (its fit seconds and the new version id). An empty request, an id the
        model does not hold, or removing every subject is a :class:`ConfigError`
        (:func:`recommender.family.without_users`), and the model is unchanged.
        """
        self.check_fitted("forget")
        requested = [user_ids] if isinstance(user_ids, str) else [str(u) for u in user_ids]
        reduced, removed_rows = without_users(self.train_, requested)
        kept = np.setdiff1d(np.arange(self.train_.n_users), removed_rows)
        before = self.version_id_
        fresh = type(self)(**self.get_params())
        fresh.fit(reduced, **self._side_without(kept, self.train_.item_index(np.asarray(reduced.item_ids, dtype=object))))
        self.__dict__.update(fresh.__dict__)
        return ForgetOutcome(
            kind=ErasureKind.retrain,
            removed=tuple(dict.fromkeys(requested)),
            residual=None,
            retrain_required=True,
            detail={"retrained": True, "fit_seconds": round(self.fit_seconds_, 3), "version_id_before": before, "version_id": self.version_id_},
        )

    # -- persistence ------------------------------------------------------------
    def save(self, path: str | Path) -> str:
        """Write the model as ``.npz`` (weights as arrays, JSON metadata; no pickle) and return the file's SHA-256."""
        self.check_fitted("save")
        path = Path(path)
        meta = {
            "format": f"{self._format}:{self.name}",
            "params": self._json_params(),
            "version_id": self.version_id_,
            "data_hash": self.data_hash_,
            "library_versions": self.library_versions_,
            "training_log": self.training_log_.to_dict(),
            "fit_seconds": self.fit_seconds_,
            "module": self._module_meta(),
        }
        arrays = train_arrays(self.train_, prefix="")
        arrays.update({f"w:{key}": value for key, value in self._state_arrays().items()})
        arrays.update({f"side:{key}": value for key, value in self._side_arrays().items()})
        return save_state(path, format=meta.pop("format"), meta=meta, arrays=arrays)

    @classmethod
    def load(cls, path: str | Path) -> Self:
        """Read a model :meth:`save` wrote; it recommends exactly as the original.

        Raises
        ------
        DataError
            When the file is not such a model, is another family's, or its
            weights do not match the version id they were saved under.
        """
        path = Path(path)
        meta, arrays = read_model_file(path, kind="neural", format=f"{cls._format}:{cls.name}")
        try:
            model = cls(**meta["params"])
            model._validate_params()
            train = train_from_arrays(arrays, prefix="")
            model._load_side({k[5:]: v for k, v in arrays.items() if k.startswith("side:")}, meta)
            model._restore_module_meta(meta.get("module", {}))
            with torch_session(model.random_state, model.num_threads):
                module = model._new_module(train)
            state = {k[2:]: torch.from_numpy(np.array(v)) for k, v in arrays.items() if k.startswith("w:")}
            module.load_state_dict(state, strict=True)
            training_log = TrainingLog.from_dict(meta["training_log"])
            fit_seconds = float(meta.get("fit_seconds", 0.0))
        except RuntimeError as err:
            raise DataError(f"{path}: the weights do not fit the {cls.name} network ({err})") from err
        except (KeyError, TypeError, ValueError, IndexError, AttributeError, ConfigError) as err:
            raise DataError(
                f"{path}: a {cls.name} model file with missing, invalid or inconsistent content ({type(err).__name__}: {err})"
            ) from err
        module.eval()
        model.module_ = module
        model.training_log_ = training_log
        model.data_hash_ = train.content_hash()  # recomputed: an edited training matrix is caught below
        model.library_versions_ = meta.get("library_versions", {})
        model.fit_seconds_ = fit_seconds
        model.popularity_ = np.asarray((train.matrix > 0).sum(axis=0)).ravel().astype(np.float64)
        model.train_ = train
        model._prepare_scoring()
        check = model._version_id()
        if check != meta.get("version_id") or model.data_hash_ != meta.get("data_hash"):
            raise DataError(f"{path}: the weights do not match the saved version id {meta.get('version_id')!r} (they hash to {check!r})")
        model.version_id_ = meta["version_id"]
        return model

    def _restore_module_meta(self, meta: Mapping[str, Any]) -> None:
        """Set what :meth:`_module_meta` saved before the network is rebuilt."""
