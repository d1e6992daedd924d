"""The interface every model family meets, so that governance never depends on the family.

A *family* is a kind of model (ALS, EASE, content-based TF-IDF, two-tower, ...).
Each family is a :class:`~recommender.base.Recommender` that also declares what
governance needs to know about it:

* ``inputs``: the data it reads (``interactions`` always; ``item_text``,
  ``item_category``, ``item_price``, ``item_release``, ``session_id``, ``user_attributes``
  where used). The pack's minimisation allow-list is checked against them before
  a fit, and user attributes reach a model only where the pack allows.
* ``erasure``: how a subject is removed: ``exact`` (the model afterwards is the
  one trained without them), ``approximate`` (with a measured residual) or
  ``retrain`` (a retrain ticket is owed).
* ``explain``: explanation tags of the family's own kind for a served list, each
  saying whether the reason is exact (a decomposition of the score) or an
  approximation.
* ``subjects``: which subjects' data the fitted model contains.
* ``forget``: remove subjects, returning a :class:`ForgetOutcome`.
* ``save``/``load``: no pickle (``.npz`` with JSON metadata, or safetensors-like
  arrays), and ``version_id_``: a content address of what was saved.

Helpers a family may use: :func:`save_state`/:func:`load_state` (``.npz`` with
JSON meta, ``allow_pickle=False``), :func:`content_version_id` (SHA-256 over the
saved content), :func:`train_arrays`/:func:`train_from_arrays`,
:func:`without_users` (the training matrix without a subject's rows) and
:func:`fallback_tag` (the tag of a cold-start item). :meth:`Family.create`
builds a model and turns an unknown parameter name into a :class:`ConfigError`.

Families are registered by name with :func:`register_family`; modules in
:mod:`recommender.families` are discovered on first use, and a family whose
optional dependencies (an extra such as ``neural`` or ``ann``) are missing is
listed as unavailable with the reason, never imported half-way.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import io
import inspect
import json
import os
import pkgutil
import sys
import zipfile
from abc import abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np

import scipy.sparse as sp

from recommender.base import MODEL_VALUE_BOUND, Recommender
from recommender.data import InteractionMatrix
from recommender.errors import ConfigError, DataError

__all__ = [
    "ErasureKind",
    "ModelTag",
    "ForgetOutcome",
    "GovernedModel",
    "Family",
    "register_family",
    "get_family",
    "read_model_file",
    "model_item_ids",
    "model_user_ids",
    "subject_rows",
    "families",
    "KNOWN_INPUTS",
    "unavailable_families",
    "FALLBACK_TAG_KIND",
    "fallback_tag",
    "content_version_id",
    "save_state",
    "load_state",
    "train_arrays",
    "train_from_arrays",
    "csr_from_arrays",
    "without_users",
    "MODEL_VALUE_BOUND",
    "out_of_bound",
    "parse_family_list",
    "BASELINE_FAMILIES",
]

KNOWN_INPUTS = frozenset(
    {
        "interactions",
        "item_text",
        "item_category",
        "item_price",
        "item_release",
        "session_id",
        "timestamp",
        "user_attributes",
    }
)
"""The inputs a family may declare; the minimisation allow-list speaks the same names."""


class ErasureKind(str, Enum):
    """How a family removes a subject."""

    exact = "exact"
    approximate = "approximate"
    retrain = "retrain"


@dataclass(frozen=True)
class ModelTag:
    """Why one item is in a list, in the family's own terms.

    ``kind`` is a stable snake_case name (``because_you_interacted``,
    ``similar_users``, ``shares_content``, ``hybrid_blend``, ``session_context``,
    ``latent_match``, ...); ``text`` the sentence a user reads; ``items`` the
    item ids it names (history items, matched items); ``exact`` is True when the
    reason is an exact decomposition of the score, False when it approximates it;
    ``evidence`` holds figures (shares, contributions, matched terms).
    """

    kind: str
    text: str
    items: tuple[str, ...] = ()
    exact: bool = False
    evidence: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {"kind": self.kind, "text": self.text, "items": list(self.items), "exact": self.exact, "evidence": self.evidence}


@dataclass(frozen=True)
class ForgetOutcome:
    """What removing subjects did to a fitted model."""

    kind: ErasureKind
    removed: tuple[str, ...]
    """The subject ids the model no longer contains (never logged: callers pseudonymise)."""
    residual: float | None = None
    """For ``approximate``: the measured residual influence (0 is exact)."""
    retrain_required: bool = False
    """True when only a retrain removes them (``kind == retrain``)."""
    detail: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict without subject ids (only their number)."""
        return {
            "kind": self.kind.value,
            "removed": len(self.removed),
            "residual": self.residual,
            "retrain_required": self.retrain_required,
            "detail": self.detail,
        }


class GovernedModel(Recommender):
    """A :class:`Recommender` with the declarations governance relies on.

    Subclasses set ``family``, ``inputs`` and ``erasure`` and implement
    :meth:`explain`, :meth:`forget`, :meth:`save` and :meth:`load` (besides the
    recommender's ``_fit``, ``_recommend_known`` and ``get_params``).
    """

    family: ClassVar[str] = "governed"
    inputs: ClassVar[frozenset[str]] = frozenset({"interactions"})
    erasure: ClassVar[ErasureKind] = ErasureKind.retrain

    version_id_: str

    def subjects(self) -> np.ndarray:
        """The subject ids whose data the fitted model contains."""
        self.check_fitted("subjects")
        return np.asarray(self.train_.user_ids, dtype=object)

    @abstractmethod
    def explain(self, user_id: str, item_ids: Sequence[str]) -> list[list[ModelTag]]:
        """Tags for each item of a list served to ``user_id`` (one list of tags per item)."""

    @abstractmethod
    def forget(self, user_ids: Sequence[str]) -> ForgetOutcome:
        """Remove ``user_ids`` from the fitted model as its ``erasure`` kind allows."""

    @abstractmethod
    def save(self, path: str | Path) -> str:
        """Write the fitted model without pickle and return the file's SHA-256."""

    @classmethod
    @abstractmethod
    def load(cls, path: str | Path) -> Self:
        """Read a model :meth:`save` wrote (``allow_pickle=False``)."""


@dataclass(frozen=True)
class Family:
    """A registered model family."""

    name: str
    build: Callable[..., GovernedModel]
    """``build(**params)`` -> an unfitted model."""
    description: str
    inputs: frozenset[str]
    erasure: ErasureKind
    extra: str | None = None
    """The optional extra it needs (``neural``, ``ann``, ``content``), or None."""
    default_params: dict[str, Any] = field(default_factory=dict)
    small_params: dict[str, Any] = field(default_factory=dict)
    """Parameters for quick runs (the contract suite, the demo)."""
    broken_params: dict[str, Any] = field(default_factory=dict)
    """Parameters the family must refuse with a :class:`ConfigError` (the contract suite fits with them)."""

    def __post_init__(self) -> None:
        unknown = sorted(set(self.inputs) - KNOWN_INPUTS)
        if unknown:
            raise ConfigError(f"family {self.name!r} declares unknown inputs {unknown}; known: {sorted(KNOWN_INPUTS)}")

    def parameter_names(self) -> list[str] | None:
        """The parameters ``build`` accepts, or None when it takes any keyword (``**params``)."""
        try:
            signature = inspect.signature(self.build)
        except (TypeError, ValueError):
            return None
        kinds = {p.kind for p in signature.parameters.values()}
        if inspect.Parameter.VAR_KEYWORD in kinds:
            return None
        return [n for n, p in signature.parameters.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]

    def create(self, **params: Any) -> GovernedModel:
        """An unfitted model with ``params``: a name ``build`` does not take is a :class:`ConfigError` naming the
        family and its parameters, not a ``TypeError`` from deep inside."""
        names = self.parameter_names()
        if names is not None:
            unknown = sorted(set(params) - set(names))
            if unknown:
                raise ConfigError(
                    f"model family {self.name!r} has no parameter {', '.join(map(repr, unknown))}; "
                    f"its parameters are: {', '.join(names) or 'none'}"
                )
        return self.build(**params)


_FAMILIES: dict[str, Family] = {}
_UNAVAILABLE: dict[str, str] = {}
_DISCOVERED = False


def register_family(family: Family) -> Family:
    """Add ``family`` to the registry (a name is registered once)."""
    if family.name in _FAMILIES and _FAMILIES[family.name] is not family:
        raise ConfigError(f"model family {family.name!r} is registered twice")
    _FAMILIES[family.name] = family
    return family


def _discover() -> None:
    global _DISCOVERED
    if _DISCOVERED:
        return
    _DISCOVERED = True
    # Found by name, not imported statically: the family modules import this one.
    package = importlib.import_module("recommender.families")

    for module in pkgutil.iter_modules(package.__path__):
        if module.name.startswith("_"):
            continue
        try:
            importlib.import_module(f"recommender.families.{module.name}")
        except ImportError as exc:  # an optional extra is not installed
            _UNAVAILABLE[module.name] = f"{type(exc).__name__}: {exc}"


def families(*, available_only: bool = True) -> dict[str, Family]:
    """The registered families by name (discovering :mod:`recommender.families` first)."""
    _discover()
    return dict(sorted(_FAMILIES.items()))


def unavailable_families() -> dict[str, str]:
    """Modules of :mod:`recommender.families` that could not be imported, with why."""
    _discover()
    return dict(_UNAVAILABLE)


BASELINE_FAMILIES: tuple[str, ...] = ("popularity", "random")
"""The families every comparison includes: a model must beat them to be worth serving."""


def parse_family_list(text: str, *, option: str = "--families") -> list[str]:
    """``all`` or ``name,name,...`` as family names (registry order, no duplicates).

    An empty list or an unknown name is a :class:`ConfigError` that names ``option`` and lists the families.
    """
    known = families()
    names = [part.strip() for part in str(text).split(",") if part.strip()]
    if names == ["all"]:
        return list(known)
    if not names:
        raise ConfigError(f"{option}: give 'all' or family names separated by commas; the families are: {', '.join(known)}")
    unknown = [n for n in names if n not in known]
    if unknown:
        missing = unavailable_families()
        hint = f" (not importable here: {', '.join(f'{m}: {why}' for m, why in missing.items())})" if missing else ""
        raise ConfigError(
            f"{option}: unknown model family {', '.join(map(repr, unknown))}; the families are: {', '.join(known)}{hint}"
        )
    return [n for n in known if n in set(names)]


def _import_named(name: str) -> None:
    """Import the module of :mod:`recommender.families` named like the family ``name``, where there is one.

    A caller asking for one family by name (the gate asks for ``als``) needs that module only: discovering
    every family imports the neural ones, and with them torch, seconds of start-up the caller never uses.
    A module that cannot be imported is left to the full discovery, which records why."""
    if not name.isidentifier() or name.startswith("_"):
        return
    qualified = f"recommender.families.{name}"
    if qualified in sys.modules or importlib.util.find_spec(qualified) is None:
        return
    try:
        importlib.import_module(qualified)
    except ImportError:
        return


def get_family(name: str) -> Family:
    """The family called ``name``, or a :class:`ConfigError` listing the known ones.

    The family's own module is imported first (:func:`_import_named`); every family is discovered only when
    that does not register ``name``."""
    if name not in _FAMILIES:
        _import_named(name)
    if name in _FAMILIES:
        return _FAMILIES[name]
    known = families()
    if name not in known:
        missing = unavailable_families()
        hint = f"; not importable here: {missing}" if missing else ""
        raise ConfigError(f"unknown model family {name!r}; the families are: {', '.join(known) or 'none'}{hint}")
    return known[name]


FALLBACK_TAG_KIND = "popularity_fallback"
"""The tag kind of an item served to a user the model does not know (the popularity ranking)."""


def fallback_tag(item_count: float | None = None) -> ModelTag:
    """The tag of an item in a cold-start list: the popularity ranking, exact (the score is the count)."""
    evidence = {} if item_count is None else {"users_who_interacted": int(item_count)}
    return ModelTag(
        FALLBACK_TAG_KIND,
        "Popular with everyone: this model does not know your history, so the list is not personalized",
        (),
        True,
        evidence,
    )


def _array_digest(hasher: Any, name: str, array: np.ndarray) -> None:
    array = np.ascontiguousarray(array)
    if array.dtype == object:
        array = array.astype(str)
    hasher.update(f"{name}\x00{array.dtype.str}\x00{array.shape}\x00".encode())
    hasher.update(array.tobytes())


def content_version_id(family: str, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> str:
    """``<family>-<24 hex digits>``: a SHA-256 over the canonical JSON of ``meta`` and every array's name, dtype,
    shape and bytes (sorted by name), i.e. over exactly what :func:`save_state` writes. The same content
    always gives the same id; any change of a parameter, an id or a number gives another."""
    hasher = hashlib.sha256(b"recgov.family-version.v1\x00")
    hasher.update(json.dumps({"family": family, "meta": meta}, sort_keys=True, separators=(",", ":"), default=str).encode())
    for name in sorted(arrays):
        _array_digest(hasher, name, arrays[name])
    return f"{family}-{hasher.hexdigest()[:24]}"


def train_arrays(train: InteractionMatrix, prefix: str = "train_") -> dict[str, np.ndarray]:
    """The training matrix as plain arrays (ids as unicode, CSR parts): what a saved model needs to filter seen
    items and to forget a subject. The names start with ``prefix`` (state models write ``train_``; the ALS,
    neural and content files, older, write none)."""
    m = train.matrix.tocsr()
    return {
        f"{prefix}user_ids": np.asarray(train.user_ids, dtype=str),
        f"{prefix}item_ids": np.asarray(train.item_ids, dtype=str),
        f"{prefix}indptr": m.indptr,
        f"{prefix}indices": m.indices,
        f"{prefix}data": m.data,
    }


def csr_from_arrays(
    data: np.ndarray, indices: np.ndarray, indptr: np.ndarray, shape: tuple[int, int], *, name: str
) -> sp.csr_matrix:
    """A CSR matrix from its three arrays as a model file holds them, checked in full first.

    scipy checks only the lengths of the arrays it is given; an index past the columns, a decreasing or
    overlong ``indptr`` reach its compiled routines unchecked, where they corrupt memory and kill the process.
    Anything inconsistent is a ``ValueError`` naming the ``name`` arrays (the loaders make it a located
    :class:`DataError`)."""
    n_rows, n_cols = (int(n) for n in shape)
    data, indices, indptr = (np.asarray(a) for a in (data, indices, indptr))
    if not all(a.ndim == 1 for a in (data, indices, indptr)):
        raise ValueError(f"{name}: data, indices and indptr must be one-dimensional")
    if indices.dtype.kind not in "iu" or indptr.dtype.kind not in "iu" or data.dtype.kind not in "biuf":
        raise ValueError(f"{name}: indices and indptr must be integers and data numbers (got {indices.dtype}, {indptr.dtype}, {data.dtype})")
    if len(indptr) != n_rows + 1:
        raise ValueError(f"{name}: indptr has {len(indptr)} entries for {n_rows} rows (expected {n_rows + 1})")
    if len(indices) != len(data):
        raise ValueError(f"{name}: {len(indices)} indices for {len(data)} values")
    if indptr[0] != 0 or indptr[-1] != len(indices) or (np.diff(indptr) < 0).any():
        raise ValueError(f"{name}: indptr must rise from 0 to the {len(indices)} stored values")
    if len(indices) and (int(indices.min()) < 0 or int(indices.max()) >= n_cols):
        raise ValueError(f"{name}: a column index lies outside [0, {n_cols})")
    return sp.csr_matrix((data, indices, indptr), shape=(n_rows, n_cols))


def train_from_arrays(arrays: dict[str, np.ndarray], prefix: str = "train_") -> InteractionMatrix:
    """The :class:`InteractionMatrix` :func:`train_arrays` described (with the same ``prefix``); arrays that do not
    make one consistent matrix are a ``ValueError`` (:func:`csr_from_arrays`)."""
    user_ids = arrays[f"{prefix}user_ids"].astype(object)
    item_ids = arrays[f"{prefix}item_ids"].astype(object)
    if user_ids.ndim != 1 or item_ids.ndim != 1:
        raise ValueError(f"{prefix}user_ids and {prefix}item_ids must be one-dimensional")
    matrix = csr_from_arrays(
        arrays[f"{prefix}data"], arrays[f"{prefix}indices"], arrays[f"{prefix}indptr"],
        (len(user_ids), len(item_ids)), name=f"the training matrix ({prefix}data, {prefix}indices, {prefix}indptr)",
    )  # fmt: skip
    return InteractionMatrix(matrix=matrix, user_ids=user_ids, item_ids=item_ids)


MODEL_FILE_MODE = 0o600
"""Permission bits of a model file: a fitted model holds the ids of the subjects it learned from (personal data),
so only its owner may read it, whatever the umask and wherever ``--models-dir`` points."""


def open_model_file(path: str | Path) -> Any:
    """``path`` opened for writing a model file, owner-only (:data:`MODEL_FILE_MODE`) from its first byte; an
    existing file is truncated and narrowed to that mode too."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, MODEL_FILE_MODE)
    try:
        os.fchmod(descriptor, MODEL_FILE_MODE)
    except BaseException:
        os.close(descriptor)
        raise
    return os.fdopen(descriptor, "wb")


def save_state(path: str | Path, *, format: str, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> str:
    """Write ``meta`` (JSON) and ``arrays`` to ``path`` as ``.npz`` without pickle; return the file's SHA-256.

    Object arrays are written as unicode so that :func:`load_state` never needs ``allow_pickle``.
    """
    path = Path(path)
    clean = {}
    for name, array in arrays.items():
        array = np.asarray(array)
        if array.dtype == object:
            array = array.astype(str)
        problem = out_of_bound(name, array)
        if problem:
            # the file would be refused on load: refuse it now, before anything is written
            raise DataError(f"{path}: cannot save the model: {problem}")
        clean[name] = array
    document = json.dumps({"format": format, **meta}, sort_keys=True)
    with open_model_file(path) as fh:
        np.savez(fh, meta=np.array(document), **clean)
    return hashlib.sha256(path.read_bytes()).hexdigest()


NON_FINITE_ARRAY = (
    "{path}: array {name!r} holds {n} of {size} value(s) that are not finite (NaN or inf); a fitted model's numbers "
    "are finite: the file was altered or is damaged, retrain or restore it"
)
"""The error of a model file with a NaN or infinite number in one of its arrays."""

OUT_OF_BOUND_ARRAY = (
    "array {name!r} holds {n} of {size} value(s) beyond the bound of a model's numbers, +/-{bound:g} (largest "
    "magnitude {largest:.3g}); scores built from such numbers overflow"
)
"""Why a model's array is refused: a number beyond :data:`MODEL_VALUE_BOUND`."""


def out_of_bound(name: str, array: np.ndarray) -> str | None:
    """Why ``array`` cannot be part of a model (:data:`OUT_OF_BOUND_ARRAY`), or None: only float arrays are bounded."""
    if array.dtype.kind not in "fc" or not array.size:
        return None
    if array.dtype.kind == "f" and -MODEL_VALUE_BOUND <= float(array.min()) and float(array.max()) <= MODEL_VALUE_BOUND:
        return None  # the usual case, without a temporary the size of the factors
    magnitude = np.abs(array)
    over = magnitude > MODEL_VALUE_BOUND
    if not over.any():
        return None
    largest = float(magnitude.max())
    return OUT_OF_BOUND_ARRAY.format(name=name, n=int(over.sum()), size=array.size, bound=MODEL_VALUE_BOUND, largest=largest)


def read_model_file(path: str | Path, *, kind: str = "", format: str | None = None) -> tuple[Any, dict[str, np.ndarray]]:
    """The JSON ``meta`` and the other arrays of an ``.npz`` model file, read without pickle.

    A missing, empty, truncated or non-zip file, a pickled (object) array or a ``meta`` that is not JSON is a
    :class:`DataError` saying the file is not a recgov ``kind`` model file; with ``format``, so is a ``meta``
    of another format (every family reads its files through here, so they fail alike)."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            meta = json.loads(str(npz["meta"]))
            arrays = {name: npz[name] for name in npz.files if name != "meta"}
    except (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile) as err:
        # a missing, empty, truncated or non-zip file, a pickled (object) array, or meta that is not JSON
        what = f"{kind} model file" if kind else "model file"
        raise DataError(f"{path}: not a recgov {what} ({type(err).__name__}: {err})") from err
    if format is not None and (not isinstance(meta, dict) or meta.get("format") != format):
        found = meta.get("format") if isinstance(meta, dict) else None
        raise DataError(f"{path}: unsupported model format {found!r}; expected {format!r}")
    for name, array in arrays.items():
        # A fitted model's numbers are finite. The version id is a content address anyone can recompute, so it
        # does not catch a NaN written on purpose; a NaN factor would serve a list of nothing, scored NaN.
        if array.dtype.kind in "fc" and not np.isfinite(array).all():
            bad = int(array.size - np.count_nonzero(np.isfinite(array)))
            raise DataError(NON_FINITE_ARRAY.format(path=path, name=name, n=bad, size=array.size))
        problem = out_of_bound(name, array)
        if problem:
            raise DataError(f"{path}: {problem}: the file was altered or is damaged, retrain or restore it")
    return meta, arrays


ITEM_ID_MEMBERS = ("item_ids", "train_item_ids")
"""Where a model file keeps the ids of the items it scores (the ALS, neural and content files; the state models)."""
USER_ID_MEMBERS = ("user_ids", "train_user_ids")
"""Where a model file keeps the ids of the subjects it learned from (its training rows)."""
_NESTED_DEPTH = 2  # a hybrid file holds its parents' files as bytes; no file nests deeper


def _model_ids(path: Any, members: tuple[str, ...], depth: int) -> np.ndarray | None:
    """The ids under ``members`` of a model file and of the model files nested in it as bytes (a hybrid's parts)."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            names = set(npz.files)
            found = [npz[name] for name in members if name in names]
            if found:
                return np.concatenate([np.asarray(a).astype(str).ravel() for a in found])
            if depth >= _NESTED_DEPTH:
                return None
            nested = []
            for name in sorted(names - {"meta"}):
                member = npz[name]
                if member.dtype == np.uint8 and member.ndim == 1 and member[:2].tobytes() == b"PK":
                    ids = _model_ids(io.BytesIO(member.tobytes()), members, depth + 1)
                    if ids is not None:
                        nested.append(ids)
    except (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile) as err:
        raise DataError(f"{path}: not a recgov model file ({type(err).__name__}: {err})") from err
    return np.concatenate(nested) if nested else None


def model_item_ids(path: str | Path) -> np.ndarray | None:
    """The item ids a model file scores, read without the rest of the file (``allow_pickle=False``).

    Only the member holding the ids is read (an ``.npz`` is a zip: its factors stay on disk), so checking an id
    against a large model costs the ids, not the model. A file that holds its parents' files (a hybrid) gives
    their ids together (an id may come twice). None when the file holds no item ids a reader knows; a file that cannot be read is a
    :class:`DataError`, as for :func:`read_model_file`."""
    return _model_ids(path, ITEM_ID_MEMBERS, 0)


def model_user_ids(path: Any) -> np.ndarray | None:
    """The subject ids a model file learned from, read as :func:`model_item_ids` reads item ids: a hybrid's
    are its parts' (an id may come twice). None when the file holds no subject ids a reader knows."""
    return _model_ids(path, USER_ID_MEMBERS, 0)


def load_state(path: str | Path, *, format: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Read what :func:`save_state` wrote (``allow_pickle=False``); a file of another format is a located
    :class:`DataError`."""
    return read_model_file(path, format=format)


def subject_rows(train: InteractionMatrix, user_ids: Sequence[str]) -> np.ndarray:
    """The sorted rows of ``user_ids``; an empty request, an unknown subject or every subject is a
    :class:`ConfigError` (ids are not echoed: they are personal data)."""
    requested = [user_ids] if isinstance(user_ids, str) else list(user_ids)
    if not requested:
        raise ConfigError("forget: no subject given")
    rows = train.user_index(np.asarray(requested, dtype=object))
    unknown = int((rows < 0).sum())
    if unknown:
        raise ConfigError(
            f"forget: {unknown} of {len(requested)} subject(s) are not in the fitted model; nothing was removed"
        )
    rows = np.unique(rows)
    if len(rows) >= train.n_users:
        raise ConfigError(f"forget: removing all {len(rows)} subjects would leave nothing to recommend from")
    return rows


def without_users(train: InteractionMatrix, user_ids: Sequence[str]) -> tuple[InteractionMatrix, np.ndarray]:
    """``train`` without the rows of ``user_ids`` and the item columns only they interacted with, and the removed
    row indices (the matrix a fit on the events without the subjects would get).

    An empty request, an id the matrix does not hold, or a request for every row is a :class:`ConfigError`
    (ids are not echoed: they are personal data)."""
    rows = subject_rows(train, user_ids)
    keep = np.ones(train.n_users, dtype=bool)
    keep[rows] = False
    matrix = train.matrix[keep].tocsr()
    # items only the subjects interacted with leave too: a model trained on the events without them has no such
    # column (the item universe is the events' items), and the item's id is itself a trace of the subjects
    cols = np.flatnonzero((matrix.getnnz(axis=0) > 0) | (train.matrix.getnnz(axis=0) == 0))
    if len(cols) < train.n_items:
        matrix = matrix[:, cols].tocsr()
    matrix.sort_indices()
    return InteractionMatrix(matrix=matrix, user_ids=train.user_ids[keep], item_ids=train.item_ids[cols].copy()), rows
