"""Fairness-aware training of the ALS core: re-weighting the training interactions by group.

The method is reweighing (Kamiran & Calders, "Data preprocessing techniques for
classification without discrimination", KAIS 2012) adapted to implicit
feedback. Kamiran & Calders weight each training example by
``P(group) P(label) / P(group, label)`` so that the protected group and the
outcome look independent to the learner. Implicit ALS (Hu, Koren & Volinsky
2008) has no labels: each observed pair carries a confidence ``alpha * r``
and the loss is a confidence-weighted sum over users. A group of users whose
rows carry less confidence mass than their share of the users weighs less in
the loss; on the consumer side this is the "underestimation" unfairness of
Yao & Huang ("Beyond parity: fairness objectives for collaborative filtering",
NeurIPS 2017), where the less active group's preferences are fitted worse.

Reweighing here scales every confidence value of a user in group ``g`` by

    w_g = ((n_g / N) / (M_g / M)) ** strength

(``n_g`` users and ``M_g`` total confidence in the group, ``N`` and ``M`` over
all users), then rescales all weights by one constant so that the total mass
``M`` stays the same (``alpha`` keeps its meaning). With ``strength = 1``
every group's share of the confidence mass equals its share of the users;
``strength = 0`` is plain ALS (the matrix is not touched). Explicit
``group_weights`` may be given instead, for an operator who wants to up-weight
one group the audit found under-served. The provider side is the same with
items in place of users (each provider group's mass share made equal to its
share of the catalog), which targets the exposure gap.

Small groups. A group of a handful of users would get an extreme weight (a
single light user, alone in a group, ~50x) and its multiplier, recorded with
the run, would disclose that person's activity (their mass is the mean mass
over the weight). With ``min_group_size`` (the pack's
``fairness.min_group_size``, the size under which every fairness check leaves
a group unjudged), groups under it and the group of missing values
(:data:`MISSING_GROUP`: ``missing``, as every fairness measure names it; a
real value ``unknown``, such as the MovieLens genre, is a group like any
other) are left at weight 1; the others are balanced among themselves, their
total mass unchanged. Only the weighted groups' multipliers
are recorded; the others are named with the reason they were left at 1, never
with their size.

What reaches the model. The attribute is read once, to compute one scalar per
row (consumer) or per column (provider) of the training matrix; it is never a
model input: the factors are learned from the re-weighted interaction matrix
alone, and the model keeps (and its version id hashes) only the per-group
multipliers, never a user's attribute value. That is why an attribute the pack
declares audit-only may drive it, and a forbidden one may not (see
:func:`check_attribute_allowed`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp
from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, ValidationError, field_validator, model_serializer

from recommender.errors import ConfigError, DataError
from recommender.fairness._common import MISSING_GROUP, group_labels, reserved_label

__all__ = [
    "FairReweighting",
    "apply_weights",
    "check_attribute_allowed",
    "fairness_groups_for",
    "groups_for",
    "left_unweighted",
    "parse_fair_reweighting",
    "reweighting_weights",
]

MAX_GROUPS = 12
"""The most groups an attribute may have (as :func:`recommender.pipeline.user_segments` keeps for segments)."""



class FairReweighting(BaseModel):
    """The ``fairness_reweighting`` parameter of :class:`~recommender.als.ALSRecommender`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    attribute: str = Field(min_length=1, max_length=64)
    """The users-table column (consumer side) or items-table column (provider side) that defines the groups."""
    side: Literal["consumer", "provider"] = "consumer"
    """Re-weight users' rows (consumer side) or items' columns (provider side)."""
    strength: float = Field(1.0, ge=0.0, le=4.0)
    """Exponent of the mass-balancing weight: 0 is plain ALS, 1 balances each group's mass to its head count."""
    group_weights: dict[str, float] | None = None
    """Explicit per-group multipliers instead of mass balancing (groups not listed keep 1; then normalised)."""
    min_group_size: int | None = Field(None, ge=1)
    """Groups with fewer members (and the group of missing values) keep weight 1 and their multipliers are not
    recorded: a governed run takes the pack's ``fairness.min_group_size``. None: every group is weighted."""

    @model_serializer(mode="wrap")
    def _without_unset_minimum(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # a config without a minimum dumps as before it existed: the model version ids of such runs stay the same
        out = handler(self)
        if out.get("min_group_size") is None:
            out.pop("min_group_size", None)
        return out

    @field_validator("group_weights")
    @classmethod
    def _positive(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        if value is None:
            return None
        if not value:
            raise ValueError("group_weights: give at least one group, or leave it out for mass balancing")
        for group, w in value.items():
            if not np.isfinite(w) or w <= 0:
                raise ValueError(f"group_weights.{group}: a weight must be a finite number > 0; got {w!r}")
        return value


def parse_fair_reweighting(value: Any, where: str = "fairness_reweighting") -> FairReweighting | None:
    """``value`` (None, a mapping, a :class:`FairReweighting` or ``[consumer:|provider:]ATTR[:STRENGTH]`` text) as a config.

    Errors are :class:`ConfigError` naming ``where`` and the field at fault.

    >>> parse_fair_reweighting("gender:0.5").strength
    0.5
    >>> parse_fair_reweighting("provider:provider_group:0.25").side
    'provider'
    >>> parse_fair_reweighting({"attribute": "gender", "strength": -1})
    Traceback (most recent call last):
    ...
    recommender.errors.ConfigError: fairness_reweighting.strength: Input should be greater than or equal to 0 (got -1)
    """
    if value is None or isinstance(value, FairReweighting):
        return value
    if isinstance(value, str):
        side, sep, rest = value.partition(":")
        if sep and side in ("consumer", "provider"):
            value = rest
        else:
            side = "consumer"
        attribute, _, strength = value.partition(":")
        value = {"attribute": attribute.strip(), "side": side}
        if strength:
            try:
                value["strength"] = float(strength)
            except ValueError:
                raise ConfigError(f"{where}: the strength after ':' must be a number; got {strength!r}") from None
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: expected a mapping such as {{attribute: gender, strength: 1.0}}; got {value!r}")
    try:
        return FairReweighting.model_validate(dict(value))
    except ValidationError as err:
        first = err.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"{where}.{loc}: {first['msg']} (got {first.get('input')!r})") from None


def groups_for(ids: np.ndarray, table: pd.DataFrame | None, attribute: str, *, what: str) -> np.ndarray:
    """The ``attribute`` value of every id in ``ids`` (object array; missing values, blank ones too, are
    :data:`MISSING_GROUP`), read as :func:`recommender.fairness.group_labels` reads a label.

    ``table`` is the users (or items) table indexed by id. A table without the
    column is a located :class:`ConfigError`: reweighting by an attribute the
    data does not hold would silently be plain ALS.
    """
    if table is None or attribute not in getattr(table, "columns", ()):
        raise ConfigError(
            f"fairness_reweighting.attribute: the {what} table has no column {attribute!r}; give a {what} table "
            "holding it (the weights are computed from it and never passed to the model)"
        )
    aligned = table[attribute].reindex(pd.Index(np.asarray(ids).astype(str)))
    labels = aligned.astype("string")
    at = reserved_label(labels, MISSING_GROUP)
    if at is not None:  # it would be left at weight 1 and recorded as a missing value, its own users unbalanced
        raise DataError(
            f"fairness_reweighting.attribute: the {what} table, column {attribute!r}, {what[:-1]} {str(aligned.index[at])!r} "
            f"holds the value {labels.iloc[at]!r}, which reads as {MISSING_GROUP!r}, the name a missing value is given "
            "here: the two would be left at weight 1 as one group. Rename the value, or leave it empty if it means "
            "that the attribute is missing."
        )
    # Read as the audit reads them (NFC, no surrounding blanks, a blank one missing): the groups balanced in
    # training are the groups the audit then judges.
    codes, names = group_labels(labels.to_numpy(dtype=object))
    return np.asarray(names, dtype=object)[codes]


def fairness_groups_for(dataset: Any, train: Any, config: FairReweighting | None) -> np.ndarray | None:
    """The group label of every user (consumer) or item (provider) of ``train``, from ``dataset``'s tables."""
    if config is None:
        return None
    if config.side == "consumer":
        return groups_for(train.user_ids, dataset.users, config.attribute, what="users")
    return groups_for(train.item_ids, dataset.items, config.attribute, what="items")


def reweighting_weights(
    matrix: sp.csr_matrix, groups: np.ndarray, config: FairReweighting
) -> tuple[np.ndarray, dict[str, float]]:
    """Per-row (consumer) or per-column (provider) weights of ``matrix``, and the per-group multipliers.

    ``groups`` holds one label per row (consumer) or column (provider). The
    weights are constant within a group and rescaled so that the total
    confidence mass of the weighted groups is unchanged. With
    ``config.min_group_size``, the groups :func:`left_unweighted` names keep
    weight 1, take no part in the balancing, and have no multiplier in the
    returned mapping (it would disclose the activity of a few people).
    Vectorised: one ``bincount`` per group sum.
    """
    axis = 1 if config.side == "consumer" else 0  # sum over items for a row's mass, over users for a column's
    mass = np.asarray(matrix.sum(axis=axis), dtype=np.float64).ravel()
    if len(groups) != len(mass):
        raise ConfigError(f"fairness_reweighting: {len(groups)} group labels for {len(mass)} {'rows' if axis else 'columns'}")
    labels, codes = np.unique(np.asarray(groups, dtype=str), return_inverse=True)
    if len(labels) > MAX_GROUPS:
        # The group labels are recorded with the run: an identifier-like column (an e-mail, a zip code) would put
        # personal data in the lineage, and per-person weights are not a group reweighting anyway.
        raise ConfigError(
            f"fairness_reweighting.attribute: {config.attribute!r} has {len(labels):,} distinct values; a group "
            f"attribute has at most {MAX_GROUPS} (its labels are recorded with the training run)"
        )
    heads = np.bincount(codes, minlength=len(labels)).astype(np.float64)
    group_mass = np.bincount(codes, weights=mass, minlength=len(labels))
    if group_mass.sum() <= 0:
        raise ConfigError("fairness_reweighting: the training matrix holds no confidence mass to re-weight")
    skipped = _unweighted_mask(labels, heads, config)
    weighted = ~skipped
    total = float(group_mass[weighted].sum())
    if config.group_weights is not None:
        unknown = sorted(set(config.group_weights) - set(labels.tolist()))
        if unknown:
            raise ConfigError(
                f"fairness_reweighting.group_weights: no {config.side} in group(s) {unknown} of {config.attribute!r}; "
                f"the groups are {labels.tolist()}"
            )
        raw = np.array([config.group_weights.get(str(g), 1.0) for g in labels], dtype=np.float64)
    else:
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = (heads / heads[weighted].sum()) / (group_mass / total)
        # a group with no mass at all has nothing to weight: leave it at 1
        raw = np.where(group_mass > 0, ratio, 1.0) ** config.strength
    raw = np.where(weighted, raw, 1.0)
    if total > 0:
        raw[weighted] *= total / float(np.dot(raw[weighted], group_mass[weighted]))  # the weighted groups' mass stays
    return raw[codes], {str(g): float(w) for g, w, keep in zip(labels, raw, weighted) if keep}


def _unweighted_mask(labels: np.ndarray, heads: np.ndarray, config: FairReweighting) -> np.ndarray:
    """Per group label: whether it is left at weight 1 (under ``config.min_group_size``, or missing values)."""
    if config.min_group_size is None:
        return np.zeros(len(labels), dtype=bool)
    return (heads < config.min_group_size) | (labels == MISSING_GROUP)


def left_unweighted(groups: np.ndarray, config: FairReweighting) -> dict[str, str]:
    """Group label -> why it was left at weight 1 by :func:`reweighting_weights` (empty without a minimum).

    What is recorded with the run in place of a multiplier: never a group's size
    (a group under the minimum is a few people, whose activity its size and
    weight would let one work out).
    """
    labels, counts = np.unique(np.asarray(groups, dtype=str), return_counts=True)
    mask = _unweighted_mask(labels, counts.astype(np.float64), config)
    out: dict[str, str] = {}
    for label, n, skip in zip(labels.tolist(), counts.tolist(), mask.tolist()):
        if not skip:
            continue
        if label == MISSING_GROUP and n >= (config.min_group_size or 0):
            out[label] = f"the {config.attribute!r} value is missing: left at weight 1"
        else:
            out[label] = f"under min_group_size {config.min_group_size}: left at weight 1 (its multiplier is not recorded)"
    return out


def apply_weights(matrix: sp.csr_matrix, weights: np.ndarray, side: str) -> sp.csr_matrix:
    """``matrix`` with each row (consumer) or column (provider) scaled by ``weights``: the same sparsity, float32."""
    m = sp.csr_matrix(matrix)
    if side == "consumer":
        scale = np.repeat(weights, np.diff(m.indptr))
    else:
        scale = weights[m.indices]
    data = (m.data.astype(np.float64) * scale).astype(np.float32)
    return sp.csr_matrix((data, m.indices.copy(), m.indptr.copy()), shape=m.shape)


def check_attribute_allowed(config: FairReweighting | None, pack: Any) -> None:
    """Refuse a reweighting attribute the pack forbids, or does not declare for audits.

    The attribute never becomes a model input, but it does shape the model: a
    pack that forbids an attribute (GDPR Art. 9 special categories) keeps it
    out of training altogether, on either side and in any spelling of its name
    (``Religion``, ``provider_religion``: :mod:`recommender.attribute_names`),
    and a user attribute the pack does not declare (as
    ``minimization.audit_only_attributes`` or ``fairness.audit_attributes``)
    has no recorded purpose here. The provider side reads an items column,
    which needs no declaration.
    """
    if config is None or pack is None:
        return
    if config.strength == 0 and config.group_weights is None:  # plain training; explicit weights apply at any strength
        return
    from recommender.attribute_names import named_attributes

    inner = getattr(pack, "pack", pack)
    minimization = getattr(inner, "minimization", None)
    forbidden = named_attributes(config.attribute, getattr(minimization, "forbidden_attributes", []) or [])
    if forbidden:
        raise ConfigError(
            f"fairness_reweighting.attribute: {config.attribute!r} names {', '.join(map(repr, forbidden))} of the pack's "
            "minimization.forbidden_attributes; a forbidden attribute may not shape a model, not even as a weight"
        )
    if config.side != "consumer":
        return
    declared = set(getattr(minimization, "audit_only_attributes", []) or [])
    declared |= set(getattr(getattr(inner, "fairness", None), "audit_attributes", []) or [])
    if config.attribute not in declared:
        raise ConfigError(
            f"fairness_reweighting.attribute: {config.attribute!r} is not declared by the pack "
            f"(minimization.audit_only_attributes or fairness.audit_attributes: {sorted(declared)})"
        )
