"""recgov's Python API: a governed recommender in a few calls.

The command line and the REST API are thin layers over the same functions; this
module is the small, stable surface for Python users. Everything personal that a
call touches is governed by the policy pack it is given, and everything it
decides is recorded in the store.

A whole session, on the embedded store and synthetic data (each step is one call)::

    import recgov

    store = recgov.open_store()                       # RECGOV_DATABASE_URL, else $RECGOV_HOME/recgov.db
    pack = recgov.load_pack("eu-gdpr-dsa")            # or a file of your own
    data = recgov.load_data("synthetic:n_users=2000,seed=1")
    run = recgov.evaluate(data)                       # offline evaluation against the baselines
    outcome = recgov.audit(pack, data, store=store)   # train, record, audit, decide
    if not outcome.decision.passed:
        print(outcome.decision.reasons)
    served = recgov.serve(store, pack, outcome.report.model_version, "u000012")  # one governed list
    recgov.erase(store, "u000012", pack=pack)         # GDPR Art. 17: unlearn, record, shred

Each function below says what it records and has an example of its own.
"""

from __future__ import annotations

from pathlib import Path

from audits.db import Store
from audits.db import open_store as _open_store
from audits.settings import get_settings
from governance.audit import AuditOutcome, run_audit
from governance.audit_inputs import evaluation_events
from governance.governed_list import serve_list
from governance.policy import LoadedPack
from governance.privacy import erase_subject
from governance.serving import ServedList
from governance.suppressed import drop_erased_events
from governance.policy import load_pack as _load_pack
from governance.packs import resolve_pack
from governance.training import GovernedTraining, train_and_record
from recommender.data import Dataset
from recommender.errors import ConfigError, DataError, RecgovError
from recommender.feedback import FeedbackConfig
from recommender.loaders import ColumnMapping
from recommender.loaders import load_data as _load_data
from recommender.pipeline import EvaluationRun, run_evaluation
from recommender.split import SplitConfig

__all__ = [
    "AuditOutcome",
    "ColumnMapping",
    "ConfigError",
    "DataError",
    "Dataset",
    "EvaluationRun",
    "GovernedTraining",
    "LoadedPack",
    "RecgovError",
    "ServedList",
    "Store",
    "audit",
    "erase",
    "evaluate",
    "load_data",
    "load_pack",
    "open_store",
    "serve",
    "train",
]


def open_store(url: str | None = None) -> Store:
    """Open (and migrate) the store where every decision is recorded.

    Parameters
    ----------
    url
        A SQLAlchemy URL (``postgresql+psycopg://...`` or ``sqlite:///...``).
        Default: ``RECGOV_DATABASE_URL``, else the SQLite file ``$RECGOV_HOME/recgov.db``.

    Examples
    --------
    >>> store = open_store()
    >>> store.url.startswith("sqlite:///")
    True
    >>> store.close()
    """
    return _open_store(url)


def load_pack(ref: str | Path) -> LoadedPack:
    """Load and validate a policy pack: a file, or a shipped pack by name.

    The pack's name, version and content hash are stamped on everything it
    governs. An invalid pack raises :class:`governance.located.PolicyError`,
    whose ``issues`` each name the file, line, column and path.

    Examples
    --------
    >>> pack = load_pack("eu-gdpr-dsa")
    >>> pack.name
    'eu-gdpr-dsa'
    >>> len(pack.content_hash)
    64
    """
    return _load_pack(resolve_pack(str(ref)))


def load_data(source: str | Path, mapping: ColumnMapping | None = None) -> Dataset:
    """Load interactions: a MovieLens-100K directory, a CSV or Parquet event log, or ``synthetic:...``.

    Parameters
    ----------
    source
        What the command line's ``DATA`` argument accepts.
    mapping
        The columns of a CSV or Parquet log (``ColumnMapping(user_id="uid", item_id="sku")``).

    Examples
    --------
    >>> data = load_data("synthetic:n_users=100,n_items=50,n_interactions=1000,seed=2")
    >>> data.events[["user_id", "item_id"]].shape[1]
    2
    """
    return _load_data(source, mapping)


PACK_NEEDS_STORE = "evaluate(pack=...) reads the subjects' consent from a store; pass store=open_store(...) too"


def evaluate(
    dataset: Dataset,
    *,
    split: str = "random",
    test_fraction: float = 0.2,
    k: int = 10,
    tune: bool = True,
    n_trials: int = 20,
    random_state: int = 0,
    store: Store | None = None,
    pack: LoadedPack | None = None,
) -> EvaluationRun:
    """Split, tune on a validation part of the training data, and compare ALS with the baselines.

    Nothing is recorded: this is the offline evaluation of ``recgov evaluate``
    (precision, recall, NDCG, MAP, coverage, exposure Gini, novelty and more,
    per segment, and each model's lift over popularity and random). With a
    ``store``, the events of subjects erased there, or whose consent to
    personalization says no, are left out first, as training leaves them out.
    With a ``pack`` too, the models are fitted only on what the audit under it
    refits on (:func:`governance.audit_inputs.evaluation_events`: under an
    opt-in purpose, a subject without a consent record is left out), and
    :class:`governance.audit_inputs.NothingToEvaluate` (a :class:`ConfigError`)
    is raised before any fit when nobody is left.

    Examples
    --------
    >>> data = load_data("synthetic:n_users=200,n_items=100,n_interactions=4000,seed=3")
    >>> run = evaluate(data, tune=False)
    >>> sorted(run.comparison.evaluations)[:2]
    ['als', 'item_knn']
    """
    if pack is not None:
        if store is None:
            raise ConfigError(PACK_NEEDS_STORE)
        dataset, _ = evaluation_events(pack, dataset, store)
    elif store is not None:
        dataset, _ = drop_erased_events(dataset, store)
    return run_evaluation(
        dataset,
        split_config=SplitConfig(kind=split, test_fraction=test_fraction),
        feedback=FeedbackConfig(),
        k=k,
        tune=tune,
        n_trials=n_trials,
        random_state=random_state,
    )


def train(
    dataset: Dataset,
    *,
    store: Store,
    pack: LoadedPack | None = None,
    models_dir: Path | None = None,
    tune: bool = False,
    measure_carbon: bool = True,
    random_state: int = 0,
) -> GovernedTraining:
    """Train ALS through the pack's training filter and record its lineage and carbon figures.

    Only events the pack allows to be profiled train (consent, retention, and
    always the erased subjects' suppression records); the model is saved under
    ``models_dir`` (default ``$RECGOV_HOME/models``) with a content-addressed
    version.

    Examples
    --------
    >>> store = open_store()
    >>> data = load_data("synthetic:n_users=200,n_items=100,n_interactions=4000,seed=4")
    >>> run = train(data, store=store, measure_carbon=False)
    >>> run.model_version.startswith("als-")
    True
    >>> store.close()
    """
    return train_and_record(
        dataset,
        store=store,
        models_dir=models_dir or get_settings().home / "models",
        pack=pack,
        tune=tune,
        measure_carbon=measure_carbon,
        random_state=random_state,
    )


def audit(
    pack: LoadedPack,
    dataset: Dataset,
    *,
    store: Store,
    model_version: str | None = None,
    out_dir: Path | None = None,
    shadow: bool = False,
) -> AuditOutcome:
    """Run every rule of the pack, record the results, and take the gate decision.

    Without ``model_version`` a model is trained and recorded first. The gate's
    JSON, JUnit, Markdown and SARIF files go to ``out_dir`` (default
    ``$RECGOV_HOME/audits/<pack>``); ``outcome.decision.passed`` is what
    ``recgov gate`` turns into its exit code. With ``shadow`` nothing blocks: the
    decision passes and keeps the reasons it would have blocked for.

    Examples
    --------
    >>> store = open_store()
    >>> data = load_data("synthetic:n_users=300,n_items=150,n_interactions=6000,seed=5")
    >>> outcome = audit(load_pack("baseline"), data, store=store)
    >>> sorted(outcome.outputs)
    ['json', 'junit', 'markdown', 'sarif']
    >>> store.close()
    """
    home = get_settings().home
    return run_audit(
        pack,
        dataset,
        store=store,
        out_dir=out_dir or home / "audits" / pack.name,
        models_dir=home / "models",
        model_version=model_version,
        train=model_version is None,
        shadow=shadow,
    )


def serve(
    store: Store,
    pack: LoadedPack,
    model_version: str,
    subject_id: str,
    *,
    k: int = 10,
    gpc: bool = False,
    tcf: str | None = None,
) -> ServedList:
    """Serve one governed list from a recorded model version, as ``recgov recommend`` does.

    Consent is decided from the subject's records in the store (a ``gpc`` or
    ``tcf`` signal is recorded first); blocked items are removed, the pack's
    re-rankers run, every item carries its explanation tags, and the decision
    is recorded, with the pack's revision and the model version, before the
    list is returned. A subject who may not be profiled (no consent, an
    opt-out, an erasure) gets the non-profiling list, and ``served.mode`` and
    ``served.consent_reason`` say why.

    Examples
    --------
    >>> store = open_store()
    >>> data = load_data("synthetic:n_users=200,n_items=100,n_interactions=4000,seed=7")
    >>> version = train(data, store=store, measure_carbon=False).model_version
    >>> served = serve(store, load_pack("eu-gdpr-dsa"), version, str(data.events.user_id.iloc[0]), k=5)
    >>> served.mode, len(served.items)
    ('non_profiling', 5)
    >>> store.close()
    """
    return serve_list(store, pack, model_version, subject_id, k=k, gpc=gpc, tcf=tcf)


def erase(store: Store, subject_id: str, *, pack: LoadedPack) -> dict:
    """Erase a subject (GDPR Art. 17): unlearn them from every recorded model, record it, crypto-shred them.

    Every recorded model artifact that holds the subject is unlearned (the new
    versions are provisional stand-ins until the full retrain the erasure
    schedules replaces them), a suppression record keeps them out of training
    and personalised serving from then on, and their pseudonym's secret is
    destroyed. Returns the erasure's report (the request, its deadline, the
    models and their standing).

    Examples
    --------
    >>> store = open_store()
    >>> data = load_data("synthetic:n_users=200,n_items=100,n_interactions=4000,seed=8")
    >>> version = train(data, store=store, measure_carbon=False).model_version
    >>> report = erase(store, str(data.events.user_id.iloc[0]), pack=load_pack("eu-gdpr-dsa"))
    >>> report["request"]["status"], report["request"]["legal_reference"]
    ('completed', 'GDPR Art. 17')
    >>> store.close()
    """
    return erase_subject(store, subject_id, pack=pack, measure_residual=False)
