"""How well a protected attribute can be read off what a model learned (proxy leakage).

A model that never saw ``gender`` can still encode it: user factors learned from
interactions often predict it well. The test is the usual one for proxies:
train a simple classifier to predict the attribute from the features (the ALS
user factors, or the allowed input features) and report its cross-validated
ROC AUC. 0.5 means the attribute cannot be told apart; 1.0 means the features
give it away entirely. For more than two groups the AUC is one-vs-rest,
weighted by group size.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from recommender.errors import DataError

__all__ = ["attribute_predictability"]

MIN_GROUP = 10


def attribute_predictability(
    features: np.ndarray, labels: np.ndarray, *, folds: int = 5, random_state: int = 0, max_rows: int = 50_000
) -> dict[str, Any]:
    """Cross-validated ROC AUC of predicting ``labels`` from ``features``.

    Groups with fewer than ``MIN_GROUP`` members are left out (too few to learn
    or to score); at most ``max_rows`` rows are used (a seeded sample).

    Returns ``{"auc": float, "n": int, "groups": {label: count}, "folds": int, "method": str}``.
    """
    X = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels, dtype=object).astype(str)
    if X.ndim != 2 or len(X) != len(y):
        raise DataError(f"features must be (n, d) with one row per label; got {X.shape} for {len(y)} labels")
    values, counts = np.unique(y, return_counts=True)
    keep_groups = values[counts >= max(MIN_GROUP, folds)]
    mask = np.isin(y, keep_groups) & np.isfinite(X).all(axis=1)
    X, y = X[mask], y[mask]
    if len(keep_groups) < 2:
        raise DataError(f"need at least two groups with {max(MIN_GROUP, folds)}+ members to measure leakage; got {dict(zip(values, counts))}")
    rng = np.random.default_rng(random_state)
    if len(y) > max_rows:
        pick = np.sort(rng.choice(len(y), max_rows, replace=False))
        X, y = X[pick], y[pick]
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=random_state)
    proba = cross_val_predict(model, X, y, cv=cv, method="predict_proba")
    classes = np.unique(y)
    if len(classes) == 2:
        auc = roc_auc_score(y == classes[1], proba[:, 1])
    else:
        auc = roc_auc_score(y, proba, multi_class="ovr", average="weighted", labels=classes)
    groups = {str(g): int(c) for g, c in zip(*np.unique(y, return_counts=True))}
    return {"auc": float(auc), "n": int(len(y)), "groups": groups, "folds": folds, "method": "logistic regression, stratified k-fold, ROC AUC (one-vs-rest weighted for 3+ groups)"}
