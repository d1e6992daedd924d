"""The ALS core: ``implicit.als.AlternatingLeastSquares`` behind recgov's interface.

What this adds to raw ``implicit``:

* string ids in and out, with the popularity fallback for unknown users;
* BLAS thread pools limited to one thread around ``implicit`` (its own
  recommendation, which avoids oversubscription with its OpenMP threads), so
  that ``implicit`` never has to warn;
* a content-addressed :attr:`ALSRecommender.version_id_`: the same training
  data, parameters and library versions always give the same id;
* a save format (``.npz``, no pickle) that keeps the ids and the training
  history needed to filter seen items;
* one constructor of the ``implicit`` model (:func:`make_als`) shared by
  fitting, loading and unlearning (:mod:`recommender.unlearning`), so that all
  three run the same solver with the same dtype and thread handling.
"""

from __future__ import annotations

import functools
import hashlib
import json
import platform
from collections.abc import Mapping
from contextlib import contextmanager
from importlib.metadata import version as _pkg_version
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Iterator

import numpy as np
import scipy.sparse as sp
from threadpoolctl import ThreadpoolController

from recommender.base import MODEL_VALUE_BOUND, Recommender
from recommender.data import InteractionMatrix
from recommender.errors import ConfigError, DataError
from recommender.family import read_model_file, save_state, train_arrays, train_from_arrays

if TYPE_CHECKING:
    from implicit.cpu.als import AlternatingLeastSquares

__all__ = [
    "ALSRecommender",
    "ConfidencePair",
    "blas_single_thread",
    "continue_fit",
    "library_versions",
    "make_als",
    "model_version_id",
    "pin_blas_single_thread",
]

FORMAT = "recgov.als.v1"


_CONTROLLER: ThreadpoolController | None = None


def _controller() -> ThreadpoolController:
    """The process's thread-pool controller, built once, after the BLAS libraries in use are loaded.

    A controller knows the libraries loaded when it was built: numpy's OpenBLAS
    is there from the start, but scipy's (which ``implicit``'s solver and
    ``scipy.linalg`` call) loads with ``scipy.linalg``; building the controller
    before it would leave that one at its default thread count.
    """
    global _CONTROLLER
    if _CONTROLLER is None:
        import implicit.cpu.als  # noqa: F401 - loads implicit's solver and, through scipy.linalg, scipy's BLAS
        import scipy.linalg  # noqa: F401

        _CONTROLLER = ThreadpoolController()
    return _CONTROLLER


@contextmanager
def blas_single_thread() -> Iterator[None]:
    """Limit BLAS to one thread while ``implicit`` runs its own thread pool.

    ``implicit`` parallelizes over users itself; a multi-threaded BLAS under it
    oversubscribes the cores (implicit measured up to 10x slowdowns) and makes
    it warn. threadpoolctl limits the pool for the block and restores it after.
    The controller is built once: building it scans the loaded libraries, which
    costs milliseconds, too much for a request path. When every BLAS is already
    at one thread (a service that pinned it, see :func:`pin_blas_single_thread`,
    or a machine with one core) the block asks each library once and changes
    nothing: a served list pays a few microseconds, not threadpoolctl's limit.
    """
    blas = _controller().select(user_api="blas").lib_controllers
    if all(lib.get_num_threads() == 1 for lib in blas):
        yield
        return
    with _controller().limit(limits=1, user_api="blas"):
        yield


def pin_blas_single_thread() -> None:
    """Set every BLAS of this process to one thread, for good (a service's start-up).

    A service answers many small requests at once: each list's products are
    64-wide, and a BLAS thread pool woken per request costs more than it saves
    and, limited and restored per request, races with the other requests'
    limits (the setting is the process's). ``implicit``'s own training wants
    single-threaded BLAS too, so nothing in a service loses by it.
    """
    _controller().limit(limits=1, user_api="blas")  # not restored: the process keeps it


@functools.cache
def _library_versions() -> tuple[tuple[str, str], ...]:
    return tuple(
        {
            "implicit": _pkg_version("implicit"),
            "numpy": np.__version__,
            "scipy": _pkg_version("scipy"),
            "python": platform.python_version(),
        }.items()
    )


def library_versions() -> dict[str, str]:
    """Versions of the libraries that determine a trained model's numbers (read once per process)."""
    return dict(_library_versions())


def model_version_id(kind: str, data_hash: str, params: dict[str, Any], libraries: dict[str, str]) -> str:
    """The content-addressed id of a model: ``<kind>-<24 hex digits>``.

    A SHA-256 over a canonical JSON of the model kind, the training data hash,
    the parameters and the library versions, with a domain-separation prefix.
    """
    document = json.dumps(
        {"kind": kind, "data": data_hash, "params": params, "libraries": libraries},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    digest = hashlib.sha256(b"recgov.model-version.v1\x00" + document.encode("utf-8")).hexdigest()
    return f"{kind}-{digest[:24]}"


def make_als(params: Mapping[str, Any], *, num_threads: int = 0) -> AlternatingLeastSquares:
    """``implicit``'s CPU ALS model for recgov's parameters: the one place recgov builds it.

    Fitting, loading a saved model and unlearning all need an ``implicit``
    model with the same settings, or their factors would not be comparable:
    ``params`` is :meth:`ALSRecommender.get_params` (factors, regularization,
    alpha, iterations, random_state), the factors are float32, the solver is
    ``fit``'s conjugate gradient and no training loss is computed. recgov
    builds the CPU implementation directly (what ``implicit.als``'s factory
    returns with ``use_gpu=False``): recgov's numbers never depend on a GPU.
    The model is built under :func:`blas_single_thread`, because ``implicit``
    checks the BLAS thread pool when built and warns under a threaded one;
    running it (``fit``, ``partial_fit_*``) needs the same block around it.
    """
    from implicit.cpu.als import AlternatingLeastSquares

    with blas_single_thread():
        return AlternatingLeastSquares(
            factors=params["factors"],
            regularization=float(params["regularization"]),
            alpha=float(params["alpha"]),
            dtype=np.float32,
            iterations=params["iterations"],
            calculate_training_loss=False,
            num_threads=num_threads,
            random_state=params["random_state"],
        )


class ConfidencePair:
    """A training matrix as ``implicit``'s ALS sweeps read it, converted and transposed once for many fits.

    ``implicit``'s ``fit`` converts its input to float32, scales it by ``alpha``
    and transposes it (items x users) on every call: a tuning search that fits
    dozens of candidates, and continues each for more sweeps, repeats that work
    on the same matrix every time. This holds the float32 matrix and its
    transpose once; :meth:`scaled` gives a candidate's ``alpha``-scaled pair by
    multiplying the stored values only (the index arrays are shared), which is
    exactly what ``fit`` computes, value for value and in the same order.
    """

    def __init__(self, matrix: sp.csr_matrix) -> None:
        cui = sp.csr_matrix(matrix)
        if cui.dtype != np.float32:
            cui = cui.astype(np.float32)
        self.cui = cui
        self.ciu = cui.T.tocsr()
        self._scaled: tuple[float, sp.csr_matrix, sp.csr_matrix] | None = None

    def scaled(self, alpha: float) -> tuple[sp.csr_matrix, sp.csr_matrix]:
        """``(alpha * C_ui, alpha * C_iu)`` as ``fit`` builds them (the last pair asked for is kept)."""
        if self._scaled is not None and self._scaled[0] == alpha:
            return self._scaled[1], self._scaled[2]
        if alpha == 1.0:
            pair = (self.cui, self.ciu)
        else:
            pair = tuple(
                sp.csr_matrix((m.data * alpha, m.indices, m.indptr), shape=m.shape) for m in (self.cui, self.ciu)
            )
        self._scaled = (alpha, *pair)
        return pair  # type: ignore[return-value]


def continue_fit(model: AlternatingLeastSquares, pair: ConfidencePair, sweeps: int) -> None:
    """Run ``sweeps`` more ALS sweeps of ``model`` on ``pair``: the factors ``model.fit`` would give, without its
    per-call conversion and transpose.

    A model without factors is initialised as ``fit`` initialises it (the same
    seeded draws, users first); one with factors continues from them, so ``n``
    calls of one sweep give the factors of one fit of ``n`` sweeps. Runs under
    :func:`blas_single_thread`. Needs ``implicit``'s CPU model (``make_als``).
    """
    from implicit.utils import check_random_state

    if sweeps < 1:
        return
    cui, ciu = pair.scaled(float(model.alpha))
    items, users = ciu.shape
    if model.user_factors is None or model.item_factors is None:
        random_state = check_random_state(model.random_state)
        if model.user_factors is None:
            model.user_factors = random_state.random((users, model.factors), dtype=model.dtype) * 0.01
        if model.item_factors is None:
            model.item_factors = random_state.random((items, model.factors), dtype=model.dtype) * 0.01
    # the caches fit invalidates: norms and squared factors of the old factors
    model._item_norms = model._user_norms = None
    model._YtY = None
    model._XtX = None
    solver = model.solver
    with blas_single_thread():
        for _ in range(sweeps):
            solver(cui, model.user_factors, model.item_factors, model.regularization, num_threads=model.num_threads)
            solver(ciu, model.item_factors, model.user_factors, model.regularization, num_threads=model.num_threads)
    model._check_fit_errors()


def _check_param(
    name: str, value: Any, kind: type | tuple[type, ...], low: float, low_inclusive: bool = True, high: float | None = None
) -> None:
    """A ``ConfigError`` in scikit-learn's words unless ``value`` is of ``kind`` within the range (NaN never is)."""
    ok = isinstance(value, kind) and not isinstance(value, bool) and (value >= low if low_inclusive else value > low)
    ok = ok and (high is None or value <= high)
    if not ok:
        bracket = "[" if low_inclusive else "("
        type_name = "an int" if kind is int else "a float"
        top = "inf)" if high is None else f"{high:g}]"
        raise ConfigError(
            f"The '{name}' parameter of ALSRecommender must be {type_name} in the range {bracket}{low}, {top}. "
            f"Got {value!r} instead."
        )


class ALSRecommender(Recommender):
    """Matrix factorization by alternating least squares (Hu, Koren, Volinsky 2008).

    Parameters
    ----------
    factors:
        Latent dimensions.
    regularization:
        L2 weight on the factors.
    alpha:
        Confidence scaling: ``implicit`` uses ``alpha * weight`` as the confidence
        of an observed pair.
    iterations:
        ALS sweeps.
    random_state:
        Seed of the factor initialization; the same seed gives the same model.
    num_threads:
        Threads for ``implicit`` (0: all cores).
    fairness_reweighting:
        Optional group re-weighting of the training interactions
        (:mod:`recommender.fair_training`: ``{attribute, side, strength,
        group_weights}``); :meth:`fit` then needs ``fairness_groups``, one
        label per user (or item). The labels only scale confidence values;
        they are never a model input.

    Examples
    --------
    >>> model = ALSRecommender(factors=16, iterations=5).fit(train)  # doctest: +SKIP
    >>> model.recommend(["u1"], k=10).as_records()  # doctest: +SKIP
    """

    name: ClassVar[str] = "als"

    def __init__(
        self,
        factors: int = 64,
        regularization: float = 0.05,
        alpha: float = 2.0,
        iterations: int = 15,
        random_state: int | None = 0,
        num_threads: int = 0,
        fairness_reweighting: Mapping[str, Any] | str | None = None,
    ) -> None:
        self.factors = factors
        self.regularization = regularization
        self.alpha = alpha
        self.iterations = iterations
        self.random_state = random_state
        self.num_threads = num_threads
        self.fairness_reweighting = fairness_reweighting

    def get_params(self) -> dict[str, Any]:
        params = {
            "factors": self.factors,
            "regularization": self.regularization,
            "alpha": self.alpha,
            "iterations": self.iterations,
            "random_state": self.random_state,
        }
        # Only when set: a plain model's parameters, and so its version id, stay what they always were.
        if self.fairness_reweighting is not None:
            from recommender.fair_training import parse_fair_reweighting

            params["fairness_reweighting"] = parse_fair_reweighting(self.fairness_reweighting).model_dump()
        return params

    def fit(
        self, train: InteractionMatrix, *, show_progress: bool = False, fairness_groups: np.ndarray | None = None
    ) -> ALSRecommender:
        """Learn from ``train``; with ``fairness_reweighting``, ``fairness_groups`` labels every user (or item).

        The labels are turned into one weight per row (or column) of the
        confidence matrix and dropped: the fitted model holds only the
        per-group multipliers (:attr:`fairness_weights_`).
        """
        self._fairness_groups = fairness_groups
        try:
            return super().fit(train, show_progress=show_progress)
        finally:
            self._fairness_groups = None

    def _fairness_matrix(self, train: InteractionMatrix) -> tuple[sp.csr_matrix, dict[str, float] | None]:
        """The matrix ALS learns from: ``train.matrix``, re-weighted when ``fairness_reweighting`` is set."""
        from recommender.fair_training import apply_weights, left_unweighted, parse_fair_reweighting, reweighting_weights

        config = parse_fair_reweighting(self.fairness_reweighting)
        groups = getattr(self, "_fairness_groups", None)
        if config is None:
            return train.matrix, None
        if groups is None:
            raise ConfigError(
                "fairness_reweighting is set but fit got no fairness_groups: give one group label per "
                f"{'user' if config.side == 'consumer' else 'item'} of the training matrix"
            )
        if config.strength == 0 and config.group_weights is None:
            return train.matrix, {}  # plain ALS, bit for bit
        weights, per_group = reweighting_weights(train.matrix, np.asarray(groups), config)
        # groups left at 1 (under the pack's min_group_size, or missing): named with the reason, without a multiplier
        self._fairness_unweighted = left_unweighted(np.asarray(groups), config) or None
        return apply_weights(train.matrix, weights, config.side), per_group

    def _validate_params(self) -> None:
        _check_param("factors", self.factors, int, 1)
        _check_param("iterations", self.iterations, int, 1)
        # bounded like every number of a model: an infinite or huge one (a file's meta may say 1e300) makes the
        # explanation's system (Y^T C_u Y + lambda I) overflow
        _check_param("regularization", self.regularization, (int, float), 0, high=MODEL_VALUE_BOUND)
        _check_param("alpha", self.alpha, (int, float), 0, low_inclusive=False, high=MODEL_VALUE_BOUND)
        if self.fairness_reweighting is not None:
            from recommender.fair_training import parse_fair_reweighting

            parse_fair_reweighting(self.fairness_reweighting, where="ALSRecommender.fairness_reweighting")

    def _fit(self, train: InteractionMatrix, *, show_progress: bool) -> None:
        self._validate_params()
        self._fairness_unweighted = None
        matrix, fairness_weights = self._fairness_matrix(train)
        model = make_als(self.get_params(), num_threads=self.num_threads)
        with blas_single_thread():
            model.fit(matrix, show_progress=show_progress)
        self.fairness_weights_ = fairness_weights
        self.fairness_unweighted_ = self._fairness_unweighted
        self.model_ = model
        self.user_factors_ = model.user_factors
        self.item_factors_ = model.item_factors
        self.data_hash_ = train.content_hash()
        self.library_versions_ = library_versions()
        self.version_id_ = model_version_id(self.name, self.data_hash_, self._hashed_params(), self.library_versions_)

    def _hashed_params(self) -> dict[str, Any]:
        """The parameters the version id covers: with reweighting, the per-group multipliers too (they depend on
        the group labels, which the data hash does not see)."""
        params = self.get_params()
        if getattr(self, "fairness_weights_", None) is not None:
            params["fairness_weights"] = self.fairness_weights_
        if getattr(self, "fairness_unweighted_", None):
            params["fairness_unweighted"] = self.fairness_unweighted_
        return params

    def _recommend_known(self, user_index: np.ndarray, k: int, *, filter_seen: bool) -> tuple[np.ndarray, np.ndarray]:
        n_items = self.train_.n_items
        n = min(k, n_items)
        with blas_single_thread():
            ids, scores = self.model_.recommend(
                user_index,
                self.train_.matrix[user_index],
                N=n,
                filter_already_liked_items=filter_seen,
            )
        ids = np.asarray(ids, dtype=np.int64).reshape(len(user_index), -1)
        scores = np.asarray(scores, dtype=np.float32).reshape(len(user_index), -1)
        # implicit marks filtered items with -FLT_MAX (not -inf) when N exceeds
        # what a user has left to see; those are not recommendations.
        bad = (ids < 0) | ~np.isfinite(scores) | (scores <= np.finfo(np.float32).min)
        ids[bad] = -1
        scores[bad] = np.nan
        if ids.shape[1] < k:
            pad = k - ids.shape[1]
            ids = np.hstack([ids, np.full((len(ids), pad), -1, dtype=np.int64)])
            scores = np.hstack([scores, np.full((len(ids), pad), np.nan, dtype=np.float32)])
        return ids, scores

    def _similar_known(self, col: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        with blas_single_thread():
            ids, scores = self.model_.similar_items(col, N=min(k + 1, self.train_.n_items))
        keep = ids != col
        ids, scores = np.asarray(ids[keep][:k], dtype=np.int64), np.asarray(scores[keep][:k], dtype=np.float32)
        out_ids = np.full((1, k), -1, dtype=np.int64)
        out_scores = np.full((1, k), np.nan, dtype=np.float32)
        out_ids[0, : len(ids)], out_scores[0, : len(ids)] = ids, scores
        return out_ids, out_scores

    # -- persistence ------------------------------------------------------------
    def save(self, path: str | Path) -> str:
        """Write the fitted model to ``path`` (``.npz``) and return the file's SHA-256."""
        self.check_fitted("save")
        path = Path(path)
        meta = {
            "format": FORMAT,
            "params": self.get_params(),
            "version_id": self.version_id_,
            "data_hash": self.data_hash_,
            "library_versions": self.library_versions_,
        }
        if getattr(self, "fairness_weights_", None) is not None:
            meta["fairness_weights"] = self.fairness_weights_
        if getattr(self, "fairness_unweighted_", None):
            meta["fairness_unweighted"] = self.fairness_unweighted_
        arrays = {"user_factors": self.user_factors_, "item_factors": self.item_factors_, **train_arrays(self.train_, prefix="")}
        return save_state(path, format=meta.pop("format"), meta=meta, arrays=arrays)

    @classmethod
    def load(cls, path: str | Path) -> ALSRecommender:
        """Read a model written by :meth:`save`; the result recommends exactly as the original."""
        path = Path(path)
        meta, arrays = read_model_file(path, kind="ALS", format=FORMAT)
        try:
            model = cls(**meta["params"])
            model._validate_params()  # an edited, out-of-range parameter is not served
            train = train_from_arrays(arrays, prefix="")
            user_ids, item_ids, matrix = train.user_ids, train.item_ids, train.matrix
            inner = make_als(model.get_params(), num_threads=model.num_threads)
            inner.user_factors = arrays["user_factors"]
            inner.item_factors = arrays["item_factors"]
            model.model_ = inner
            model.user_factors_ = inner.user_factors
            model.item_factors_ = inner.item_factors
            model.data_hash_ = meta["data_hash"]
            model.library_versions_ = meta["library_versions"]
            model.version_id_ = meta["version_id"]
            model.fairness_weights_ = meta.get("fairness_weights")
            model.fairness_unweighted_ = meta.get("fairness_unweighted")
            if model.item_factors_.shape[0] != len(item_ids) or model.user_factors_.shape[0] != len(user_ids):
                raise ValueError("the factor matrices do not match the training matrix's users and items")
            if model.item_factors_.ndim != 2 or model.user_factors_.shape[1:] != model.item_factors_.shape[1:]:
                raise ValueError("the user and item factor matrices do not have the same number of columns")
        except (KeyError, TypeError, ValueError, ConfigError) as err:
            raise DataError(f"{path}: a {FORMAT} file with missing or inconsistent content ({type(err).__name__}: {err})") from err
        model.popularity_ = np.asarray((matrix > 0).sum(axis=0)).ravel().astype(np.float64)
        model.train_ = train
        return model
