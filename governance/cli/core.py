"""Core commands: ``data validate``, ``train``, ``evaluate``.

Each command loads its DATA argument (a published data set's directory or file,
read in the layout its files show or the one ``--format`` names; a CSV/Parquet
log with ``--map``; or ``synthetic[:name=value,...]``), calls one library
function and prints either a readable table or, with ``--json``, one JSON
document on stdout.
"""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Any, Optional

import typer
from rich.table import Table

from governance.cli.download import download_command
from governance.cli._common import EXIT_FINDING, console, emit_json, err_console, fail, progress_enabled, user_errors
from governance.policy import MAX_LIST_LENGTH
from recommender.data import Dataset
from recommender.errors import ConfigError
from recommender.feedback import FeedbackConfig
from recommender.loaders import ColumnMapping, load_data

__all__ = ["register", "evaluation_data", "left_out_line", "DataArg", "FormatOpt", "MapOpt", "ItemsOpt", "ItemsMapOpt", "JsonOpt", "load_dataset", "print_rows"]

ITEMS_MAP_WITHOUT_ITEMS = "--items-map describes the columns of an item table; give the table with --items PATH"

DataArg = Annotated[
    str,
    typer.Argument(
        help="A data set directory or file (MovieLens, Amazon, Last.fm, Book-Crossing, Retailrocket), a .csv/.parquet event log, or synthetic[:name=value,...].",
        metavar="DATA",
        show_default=False,
    ),
]
FormatOpt = Annotated[
    Optional[str],
    typer.Option(
        "--format",
        help="Layout of DATA: movielens-100k, movielens-1m, movielens-csv, amazon, lastfm-1k, lastfm-360k, book-crossing, retailrocket, events (default: told by its files).",
        show_default=False,
    ),
]
MapOpt = Annotated[
    Optional[str],
    typer.Option("--map", help="Column mapping of an event log: field=column,... (user_id, item_id, timestamp, event_type, value, session_id, delimiter)."),
]
ItemsOpt = Annotated[
    Optional[str],
    typer.Option(
        "--items",
        help="Item table (.csv/.parquet): providers, categories, release dates of the catalog, for provider and category rules.",
        show_default=False,
    ),
]
ItemsMapOpt = Annotated[
    Optional[str],
    typer.Option(
        "--items-map",
        help="Column mapping of the item table: field=column,... (item_id, provider, provider_group, category, release, category_separator, delimiter, encoding).",
        show_default=False,
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout instead of tables.")]
ThresholdOpt = Annotated[float, typer.Option("--threshold", min=0, help="Ratings at or above this are positives.")]
SeedOpt = Annotated[int, typer.Option("--seed", min=0, help="Seed of every random step.")]


class SplitKind(str, Enum):
    """The split protocols of ``recgov evaluate``."""

    random = "random"
    time = "time"
    leave_last = "leave_last"


def load_dataset(
    data: str,
    mapping: str | None,
    *,
    json_output: bool,
    items: str | None = None,
    items_map: str | None = None,
    data_format: str | None = None,
) -> Dataset:
    """Load DATA for a command (and its item table, ``--items``), with a status line for people at a terminal."""
    from recommender.item_table import ItemMapping, attach_items, load_item_table

    if items_map is not None and items is None:
        raise ConfigError(ITEMS_MAP_WITHOUT_ITEMS)
    parsed = ColumnMapping.parse(mapping) if mapping else None
    item_mapping = ItemMapping.parse(items_map) if items_map else None
    show = progress_enabled(json_output)
    if show:
        with err_console.status(f"loading {data}"):
            dataset = load_data(data, parsed, show_progress=show, format=data_format)
    else:
        dataset = load_data(data, parsed, format=data_format)
    if items is None:
        return dataset
    return attach_items(dataset, load_item_table(items, item_mapping), source=items)


def parse_as_of(as_of: str | None):  # -> datetime | None
    """``--as-of``: an ISO 8601 date or time (UTC when no zone is given), or None."""
    from datetime import datetime, timezone

    if not as_of:
        return None
    try:
        moment = datetime.fromisoformat(as_of)
    except ValueError:
        raise fail(f"--as-of must be an ISO 8601 date or time such as 2024-07-01. Got {as_of!r} instead.") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _is_number(value: Any) -> bool:
    try:
        float(str(value).rstrip("%"))
        return True
    except ValueError:
        return str(value) in ("-", "")


def print_rows(rows: list[dict[str, Any]], title: str | None = None) -> None:
    """Print a list of same-keyed dicts as a table."""
    if not rows:
        return
    table = Table(title=title, title_justify="left", show_edge=False, header_style="bold")
    for column in rows[0]:
        numeric = all(_is_number(row.get(column)) for row in rows)
        table.add_column(str(column), justify="right" if numeric else "left")
    for row in rows:
        table.add_row(*(str(v) for v in row.values()))
    console.print(table)


def comparison_rows(comparison: Any) -> list[dict[str, str]]:
    """Metrics as rows and models as columns: narrow enough for a terminal."""
    from recommender.evaluate import BEYOND_METRICS
    from recommender.metrics import ACCURACY_METRICS

    def fmt(value: Any) -> str:
        return "-" if value is None else f"{value:.4f}"

    evaluations = comparison.evaluations
    rows = [{"metric": f"{m}@{comparison.k}", **{label: fmt(ev.metrics.get(m)) for label, ev in evaluations.items()}} for m in ACCURACY_METRICS]
    rows += [{"metric": m, **{label: fmt(ev.beyond.get(m)) for label, ev in evaluations.items()}} for m in BEYOND_METRICS]
    for kind in comparison.baselines:
        rows.append(
            {
                "metric": f"lift vs {kind}",
                **{label: fmt(comparison.lift.get(label, {}).get(kind, {}).get("ndcg")) for label in evaluations},
            }
        )
    return rows


def validate_command(
    data: DataArg,
    data_format: FormatOpt = None,
    mapping: MapOpt = None,
    items: ItemsOpt = None,
    items_map: ItemsMapOpt = None,
    bots: Annotated[
        Optional[str],
        typer.Option("--bots", help="Bot thresholds: name=value,... (min_events, min_gap, rate_threshold, regular_cv, max_session_hours, catalog_share, repeat_ratio, ...).", show_default=False),
    ] = None,
    json_output: JsonOpt = False,
    strict: Annotated[bool, typer.Option("--strict", help="Exit 1 when validation finds anything.")] = False,
) -> None:
    """Validate a raw event log: duplicates, bots, missing or unknown ids, bad values, future times."""
    from recommender.bots import parse_bot_rules
    from recommender.validate import validate_events

    with user_errors():
        rules = parse_bot_rules(_pairs("--bots", bots)) if bots else None
        dataset = load_dataset(data, mapping, items=items, items_map=items_map, json_output=json_output, data_format=data_format)
        report = validate_events(dataset, bot_rules=rules)
    if json_output:
        emit_json({"dataset": {"name": dataset.name, "source": dataset.source}, **report.to_dict()})
    else:
        console.print(f"[bold]{dataset.name}[/]: {report.n_rows:,} events")
        if report.ok:
            console.print("no findings")
        else:
            print_rows(report.summary_table(), title="findings")
    if strict and not report.ok:
        raise typer.Exit(code=EXIT_FINDING)


def _pairs(option: str, text: str) -> dict[str, str]:
    """``name=value,...`` as a dict (values stay text: the model they feed converts and checks them)."""
    pairs = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        if not sep or not name.strip():
            raise ConfigError(f"{option}: {part!r} is not of the form name=value (e.g. {option} min_events=50)")
        pairs[name.strip()] = value.strip()
    return pairs


def purge_command(
    data: DataArg,
    pack: Annotated[str, typer.Option("--pack", "-p", help="The pack whose minimization.retention_days applies.")],
    data_format: FormatOpt = None,
    mapping: MapOpt = None,
    as_of: Annotated[Optional[str], typer.Option("--as-of", help="Measure the window from this ISO date instead of now.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Count what would be purged; change nothing.")] = False,
    erased: Annotated[bool, typer.Option("--erased/--no-erased", help="Also remove every event of an erased subject up to their erasure.")] = True,
    database_url: Annotated[Optional[str], typer.Option("--database-url", help="The store (for the trail event).")] = None,
    json_output: JsonOpt = False,
) -> None:
    """Remove events older than the pack's retention window, and the events of erased subjects, from a stored log (with a trail event)."""

    from audits import open_store
    from governance.cli._common import load_or_fail
    from governance.retention import purge_expired

    loaded = load_or_fail(pack, json_output=json_output)
    now = parse_as_of(as_of)
    with user_errors():
        parsed = ColumnMapping.parse(mapping) if mapping else None
        store = open_store(database_url)
        try:
            report = purge_expired(data, loaded.pack, store, mapping=parsed, format=data_format, now=now, dry_run=dry_run, erased=erased)
        finally:
            store.close()
    if json_output:
        emit_json(report)
        return
    verb = "would purge" if dry_run else "purged"
    window = (
        f"{report['events_past_retention']:,} older than {report['cutoff']} ({report['retention_days']} days under {report['pack']} {report['pack_version']})"
        + (f", {report['events_of_unknown_time']:,} of them of unknown time" if report.get("events_of_unknown_time") else "")
        if report["cutoff"] is not None
        else f"none for age ({report['pack']} sets no retention window)"
    )
    console.print(
        f"{report['source']}: {verb} {report['events_purged']:,} of {report['events_total']:,} events: {window}; "
        f"{report['events_of_erased_subjects']:,} of {report['erased_subjects_found']:,} erased subject(s)"
        + (f"; {report['profiles_of_erased_subjects']:,} row(s) of erased subjects' attributes" if report.get("profiles_of_erased_subjects") else ""),
        highlight=False,
        soft_wrap=True,
    )


def without_erased_events(dataset: Any, database_url: str | None) -> tuple[Any, dict[str, Any] | None]:
    """``dataset`` without the events of erased subjects (up to their erasure), as training always leaves them out.

    Reads the suppression records of the store named (or the default one); a
    default embedded store that does not exist yet holds no erasure, and is not
    created for the asking.
    """
    from audits import open_store
    from audits.settings import get_settings
    from governance.suppressed import drop_erased_events

    settings = get_settings()
    if database_url is None and settings.database_url is None and not settings.sqlite_path.exists():
        return dataset, None
    store = open_store(database_url)
    try:
        return drop_erased_events(dataset, store)
    finally:
        store.close()


EVALUATION_RULES = (
    "the pack's consent rules, as a training run under it applies them (consent for personalization in force, "
    "objections, erasures; the retention window is not applied): governance.audit_inputs.evaluation_events, what the audit refits on"
)


def evaluation_data(dataset: Any, database_url: str | None, loaded: Any = None) -> tuple[Any, dict[str, Any] | None]:
    """The events an offline evaluation may fit models on, and a report of what was left out.

    Fitting a model on a subject's events is profiling them, whether the model is
    kept or not. Under a pack (``loaded``) these are the events the audit refits on
    (:func:`governance.audit_inputs.evaluation_events`: under a pack with consent
    rules, only the subjects a training run under it may learn from, so under an
    opt-in purpose a subject without a record is left out), read from the store
    named (or the default one, opened as the audit opens it); when none is left,
    :class:`governance.audit_inputs.NothingToEvaluate` is raised before any fit.
    Without a pack, :func:`without_erased_events` (erasures and recorded refusals).
    The report: ``events`` (``total``, ``kept``, ``excluded`` per reason), and the
    pack and the rules under a pack; None without a pack and without a store.
    """
    if loaded is None:
        return without_erased_events(dataset, database_url)
    from audits import open_store
    from governance.audit_inputs import evaluation_events

    store = open_store(database_url)
    try:
        kept, left_out = evaluation_events(loaded, dataset, store)
    finally:
        store.close()
    report = {
        **loaded.stamp(),
        "rules": EVALUATION_RULES,
        "events": {"total": len(dataset.events), "kept": len(kept.events), "excluded": left_out},
    }
    return kept, report


def left_out_line(report: dict[str, Any] | None) -> str | None:
    """One line saying how many events an offline evaluation left out and why (None when it left out none)."""
    events = (report or {}).get("events") or {}
    excluded = {reason: n for reason, n in (events.get("excluded") or {}).items() if n}
    if not excluded:
        return None
    reasons = ", ".join(f"{n:,} {reason}" for reason, n in excluded.items())
    under = f"under pack {report['pack']}" if report.get("pack_hash") else "without a pack (erasures and refusals)"
    return f"left out {sum(excluded.values()):,} of {events['total']:,} events {under}: {reasons}"


def evaluate_command(
    data: DataArg,
    data_format: FormatOpt = None,
    mapping: MapOpt = None,
    items: ItemsOpt = None,
    items_map: ItemsMapOpt = None,
    split_kind: Annotated[SplitKind, typer.Option("--split", help="random holdout, global time cutoff, or each user's last events.")] = SplitKind.random,
    test_fraction: Annotated[float, typer.Option("--test-fraction", help="Share held out (random, time).")] = 0.2,
    leave_k: Annotated[int, typer.Option("--leave-k", min=1, help="Events held out per user (leave_last).")] = 1,
    k: Annotated[int, typer.Option("--k", "-k", min=1, max=MAX_LIST_LENGTH, help="Length of the recommended lists.")] = 10,
    threshold: ThresholdOpt = 4.0,
    seed: SeedOpt = 0,
    tune: Annotated[bool, typer.Option("--tune/--no-tune", help="Tune ALS and item-kNN on a validation split of the training data.")] = True,
    trials: Annotated[int, typer.Option("--trials", min=1, help="ALS tuning budget.")] = 20,
    database_url: DatabaseOpt = None,
    ablate: Annotated[
        bool, typer.Option("--ablate", help="Report each re-ranker's, event type's and model component's effect on quality and fairness (paired bootstrap over users).")
    ] = False,
    ablate_pack: Annotated[
        Optional[str], typer.Option("--pack", "-p", help="With --ablate: the pack whose re-ranking steps are ablated (and applied to every variant). With --families: every family's inputs must be on the pack's minimization allow-list, or nothing is fitted. Either way every fit sees only the events the pack's consent rules allow (what its audit refits on: under an opt-in purpose, no record means no), read from the store.", show_default=False)
    ] = None,
    bootstrap: Annotated[int, typer.Option("--bootstrap", min=1, help="With --ablate: bootstrap resamples per interval.")] = 500,
    families: Annotated[
        Optional[str],
        typer.Option(
            "--families",
            help="Compare model families instead: 'all' or names separated by commas (see 'recgov models families'); the popularity and random baselines are always included. Reports each family's fit seconds, carbon and the share of served items its tags cover.",
            show_default=False,
        ),
    ] = None,
    country: Annotated[str, typer.Option("--country", help="With --families: ISO 3166-1 alpha-3 code of the grid, for each fit's emissions estimate.")] = "USA",
    carbon: Annotated[bool, typer.Option("--carbon/--no-carbon", help="With --families: measure each family's fit with codecarbon.")] = True,
    json_output: JsonOpt = False,
) -> None:
    """Evaluate ALS against popularity, random and item-kNN on one split (erased subjects' and refusals' events left out; with --pack, all but what its consent rules allow); with --families, any model families."""
    from recommender.pipeline import run_evaluation
    from recommender.split import SplitConfig

    if ablate_pack is not None and not ablate and families is None:
        raise fail("--pack is for --ablate (the re-ranking steps to ablate) or --families (whose inputs it must allow); add one")
    if ablate and families is not None:
        raise fail("--families and --ablate are separate runs; give one of them")
    chosen = None
    if families is not None:
        from recommender.family import parse_family_list

        with user_errors():
            chosen = parse_family_list(families)
    loaded = None
    if ablate_pack is not None:
        from governance.cli._common import load_or_fail

        loaded = load_or_fail(ablate_pack, json_output=json_output)
    with user_errors():
        if not 0 < test_fraction < 1:
            raise ConfigError(f"--test-fraction must be a number in the range (0, 1). Got {test_fraction} instead.")
        if chosen is not None:
            from governance.carbon import check_country

            check_country(country)
        config = SplitConfig(kind=split_kind.value, test_fraction=test_fraction, k=leave_k, random_state=seed)
        dataset = load_dataset(data, mapping, items=items, items_map=items_map, json_output=json_output, data_format=data_format)
        if chosen is not None and loaded is not None:
            _check_families_allowed(chosen, loaded, dataset)
        elif loaded is not None:  # --ablate under a pack: its fits are ALS's, held to the pack's forbidden attributes
            from governance.family_inputs import refuse_banned_columns
            from recommender.family import get_family

            refuse_banned_columns(get_family("als"), loaded, dataset=dataset)
        # Every fit below, tuning included, sees only what the pack (or, without one, erasures and refusals) allows.
        dataset, erased = evaluation_data(dataset, database_url, loaded)
        if ablate:
            _ablate(dataset, config, threshold, k, tune, trials, seed, loaded, bootstrap, erased, json_output)
            return
        measure_fit = None
        if chosen is not None:
            from governance.carbon import measure

            def measure_fit(name: str) -> Any:
                return measure(country, enabled=carbon)

        run = run_evaluation(
            dataset,
            split_config=config,
            feedback=FeedbackConfig(rating_threshold=threshold),
            k=k,
            tune=tune,
            n_trials=trials,
            random_state=seed,
            show_progress=progress_enabled(json_output),
            families=chosen,
            measure=measure_fit,
        )
    if json_output:
        emit_json({**run.to_dict(), "privacy_filter": erased, **({"pack": loaded.name} if chosen is not None and loaded is not None else {})})
        return
    left_out = left_out_line(erased)
    if left_out:
        console.print(left_out, highlight=False, soft_wrap=True)
    d = run.dataset
    s = run.split
    console.print(f"[bold]{d['name']}[/]: {d['n_events']:,} events, {d['n_users']:,} users, {d['n_items']:,} items")
    console.print(
        f"split {s['kind']}: {s['n_train_pairs']:,} training positives, {s['n_test_pairs_kept']:,} test positives "
        f"({s['n_dropped_unknown_user'] + s['n_dropped_unknown_item']:,} dropped as unknown to training)"
    )
    for name, result in run.tuning.items():
        console.print(f"tuned {name} on a validation split of the training data: {result.best_params} (ndcg@{k} {result.best_score:.4f})")
    print_rows(comparison_rows(run.comparison), title=f"models at k={k} (lift = ndcg / baseline ndcg)")
    if run.families is not None:
        print_rows(family_rows(run.families, k), title="model families (tags: share of served items with a tag of the family)")


def family_rows(report: dict[str, dict[str, Any]], k: int) -> list[dict[str, str]]:
    """One row per family: ndcg, fit seconds, energy and emissions, tag coverage, erasure, inputs."""

    def num(value: Any, fmt: str) -> str:
        return "-" if value is None else format(value, fmt)

    rows = []
    for name, doc in report.items():
        c = doc.get("carbon") or {}
        rows.append(
            {
                "family": name,
                f"ndcg@{k}": num(doc.get("ndcg"), ".4f"),
                "fit s": num(doc.get("fit_seconds"), ".2f"),
                "kWh": num(c.get("energy_kwh"), ".3g"),
                "kg CO2e": num(c.get("emissions_kg"), ".3g"),
                "tagged": num(doc["tags"]["share_tagged"], ".3f"),
                "exact tags": num(doc["tags"]["share_exact"], ".3f"),
                "erasure": doc["erasure"],
                "inputs": ", ".join(doc["inputs"]),
            }
        )
    return rows


def _check_families_allowed(names: list[str], loaded: Any, dataset: Any) -> None:
    """Refuse, before any fit, a family whose inputs the pack's minimisation allow-list does not cover."""
    from governance.family_inputs import check_family_inputs
    from recommender.family import get_family

    attributes = [] if dataset.users is None else [str(c) for c in dataset.users.columns]
    for name in names:
        family = get_family(name)
        check_family_inputs(family, loaded, user_attributes=attributes, dataset=dataset, params=family.default_params)


def _ablate(dataset: Any, config: Any, threshold: float, k: int, tune: bool, trials: int, seed: int, loaded: Any, bootstrap: int, erased: Any, json_output: bool) -> None:
    """``recgov evaluate --ablate``: :func:`governance.ablation.run_ablation`, as JSON or a table."""
    from governance.ablation import run_ablation, table_rows
    from recommender.split import split, train_test_matrices
    from recommender.tuning import tune_als

    feedback = FeedbackConfig(rating_threshold=threshold)
    params = None
    if tune:  # on a validation split of the training part, as recgov evaluate tunes
        train = train_test_matrices(*split(dataset.events, config), feedback).train
        params = dict(tune_als(train, n_trials=trials, k=k, random_state=seed, show_progress=progress_enabled(json_output)).best_params)
    report = run_ablation(dataset, split_config=config, feedback=feedback, k=k, als_params=params, pack=loaded, n_bootstrap=bootstrap, random_state=seed)
    if json_output:
        emit_json({**report, "privacy_filter": erased})
        return
    left_out = left_out_line(erased)
    if left_out:
        console.print(left_out, highlight=False, soft_wrap=True)
    console.print(
        f"ablation at k={k} on {report['n_users']:,} test users: effect = full - without the component, "
        f"{report['confidence']:.0%} paired bootstrap interval over users ({report['n_bootstrap']} resamples; * excludes 0); "
        f"lower is fairer for {', '.join(report['lower_is_better'])}",
        highlight=False,
        soft_wrap=True,
    )
    print_rows(table_rows(report), title="ablation")


DatabaseOpt = Annotated[
    Optional[str],
    typer.Option("--database-url", help="SQLAlchemy URL of the store (default: RECGOV_DATABASE_URL, else the embedded SQLite file).", show_default=False),
]


def train_command(
    data: DataArg,
    data_format: FormatOpt = None,
    mapping: MapOpt = None,
    items: ItemsOpt = None,
    items_map: ItemsMapOpt = None,
    factors: Annotated[Optional[int], typer.Option("--factors", min=1, help="Latent dimensions (default: tuned, else 64).")] = None,
    regularization: Annotated[Optional[float], typer.Option("--regularization", min=0, help="L2 weight (default: tuned, else 0.05).")] = None,
    alpha: Annotated[Optional[float], typer.Option("--alpha", min=0, help="Confidence scaling (default: tuned, else 2.0).")] = None,
    iterations: Annotated[Optional[int], typer.Option("--iterations", min=1, help="ALS sweeps (default: tuned, else 15).")] = None,
    tune: Annotated[bool, typer.Option("--tune/--no-tune", help="Tune on a validation split of the data first.")] = True,
    threshold: ThresholdOpt = 4.0,
    seed: SeedOpt = 0,
    country: Annotated[str, typer.Option("--country", help="ISO 3166-1 alpha-3 code of the grid, for the emissions estimate.")] = "USA",
    carbon: Annotated[bool, typer.Option("--carbon/--no-carbon", help="Measure energy and emissions with codecarbon.")] = True,
    pack: Annotated[Optional[str], typer.Option("--pack", "-p", help="Train only on what this pack allows: consented subjects, events within retention.")] = None,
    as_of: Annotated[Optional[str], typer.Option("--as-of", help="Measure the retention window from this ISO date instead of now (backfills, reproducible runs).")] = None,
    database_url: DatabaseOpt = None,
    engine: Annotated[str, typer.Option("--engine", help="inprocess (implicit) or spark (the pack's filter and MLlib ALS on PySpark; needs --pack).")] = "inprocess",
    spark_master: Annotated[Optional[str], typer.Option("--spark-master", help="Spark master URL (default: RECGOV_SPARK_MASTER, else local[2]).", show_default=False)] = None,
    json_output: JsonOpt = False,
    family: Annotated[str, typer.Option("--family", help="The model family to train (recgov models families); als is the default. Any family is trained under the same pack filter, carbon measurement and lineage.")] = "als",
    param: Annotated[Optional[list[str]], typer.Option("--param", help="A parameter of --family as key=value (repeatable); the family's defaults otherwise.", show_default=False)] = None,
    fair_reweight: Annotated[Optional[str], typer.Option("--fair-reweight", help="Re-weight training interactions so each group carries its head-count share of the confidence mass: [consumer:]ATTR[:STRENGTH] groups users by a users-table attribute, provider:ATTR[:STRENGTH] items by an items-table one (0 is plain ALS, 1 full balance). The attribute only scales weights, never a model input; with --pack a user attribute must be declared audit-only and not forbidden.", show_default=False)] = None,
) -> None:
    """Train ALS (or --family NAME) on DATA, save the model and record its lineage (dataset, run, carbon, model) in the store."""
    if family != "als" or param:
        from governance.cli.family_train import train_family

        train_family(data, data_format, mapping, items, items_map, family=family, param=param, als_options=(factors, regularization, alpha, iterations, fair_reweight), engine=engine, threshold=threshold, seed=seed, country=country, carbon=carbon, pack=pack, as_of=as_of, database_url=database_url, json_output=json_output, load=load_dataset, read_as_of=parse_as_of)
        return
    if engine != "inprocess" and fair_reweight is not None:
        with user_errors():
            raise ConfigError("--fair-reweight: only the inprocess engine (implicit ALS) trains with fairness reweighting")
    if engine != "inprocess" and pack:
        from governance.cli._common import load_or_fail

        if load_or_fail(pack, json_output=json_output).pack.training_reweighting() is not None:
            with user_errors():
                raise ConfigError("--engine: the pack's training.fairness re-weights training, which only the inprocess engine (implicit ALS) does")
    if engine != "inprocess":
        _train_on_spark(data, data_format, mapping, items, items_map, pack, params={k: v for k, v in {"factors": factors, "regularization": regularization, "alpha": alpha, "iterations": iterations}.items() if v is not None}, threshold=threshold, as_of=as_of, database_url=database_url, engine=engine, spark_master=spark_master, json_output=json_output)
        return
    from audits import open_store
    from audits.settings import get_settings
    from governance.training import train_and_record, with_pack_training

    params = {k: v for k, v in {"factors": factors, "regularization": regularization, "alpha": alpha, "iterations": iterations}.items() if v is not None}
    loaded = None
    minimising = None  # the pack whose minimisation rules the fit is held to, with or without consent rules
    now = parse_as_of(as_of)
    if fair_reweight is not None:
        from recommender.fair_training import check_attribute_allowed, parse_fair_reweighting

        with user_errors():
            params["fairness_reweighting"] = parse_fair_reweighting(fair_reweight, where="--fair-reweight").model_dump()
    if pack:
        from governance.cli._common import load_or_fail

        loaded = minimising = load_or_fail(pack, json_output=json_output)
        with user_errors():  # before the consent-less pack is dropped below: its training section applies
            params = with_pack_training(params, loaded, where="--fair-reweight")
        if fair_reweight is not None:
            with user_errors():  # before the consent-less pack is dropped below: the attribute check needs it
                check_attribute_allowed(parse_fair_reweighting(params["fairness_reweighting"]), loaded.pack)
        if not loaded.pack.consent.purposes:
            # A pack without consent rules (the baseline) filters nothing by consent: training sees what
            # its audit's training sees, every event but those of erased subjects (drop_erased_events).
            if not json_output:
                console.print(f"pack {loaded.name} lists no consent purpose: training on every event but erased subjects'", highlight=False)
            loaded = None
    with user_errors():
        from governance.carbon import check_country

        check_country(country)
        dataset = load_dataset(data, mapping, items=items, items_map=items_map, json_output=json_output, data_format=data_format)
        if minimising is not None and loaded is None:  # train_and_record checks under a pack it is given
            from governance.family_inputs import check_family_inputs
            from recommender.family import get_family

            check_family_inputs(get_family("als"), minimising, dataset=dataset, params=params)
        store = open_store(database_url)
        try:
            run = train_and_record(
                dataset,
                store=store,
                models_dir=get_settings().home / "models",
                feedback=FeedbackConfig(rating_threshold=threshold),
                params=params,
                tune=tune,
                country_iso_code=country,
                measure_carbon=carbon,
                random_state=seed,
                show_progress=progress_enabled(json_output),
                pack=loaded,
                now=now,
            )
        finally:
            store.close()
    doc = run.to_dict()
    if json_output:
        emit_json(doc)
        return
    console.print(f"model [bold]{doc['model_version']}[/] trained on {doc['matrix']['users']:,} users x {doc['matrix']['items']:,} items ({doc['matrix']['interactions']:,} interactions) in {doc['seconds']:.1f} s", highlight=False)
    console.print(f"params {doc['params']}", highlight=False)
    console.print(f"artifact {doc['artifact']} (sha256 {doc['artifact_hash'][:16]}...)", highlight=False)
    if doc["carbon"]:
        c = doc["carbon"]
        console.print(f"energy {c['energy_kwh']:.3g} kWh, emissions {c['emissions_kg']:.3g} kg CO2e ({c['method']})", highlight=False)
    if doc.get("privacy_filter"):
        f = doc["privacy_filter"]
        excluded = ", ".join(f"{n:,} {r}" for r, n in f["events"]["excluded"].items() if n) or "none"
        console.print(f"pack {f.get('pack', pack)}: trained on {f['events']['kept']:,} of {f['events']['total']:,} events; excluded: {excluded}", highlight=False)
    console.print(f"recorded: dataset {doc['dataset_version'][:16]}..., training run {doc['training_run']}, model {doc['model_version']}", highlight=False)


def _train_on_spark(
    data: str, data_format: str | None, mapping: str | None, items: str | None, items_map: str | None, pack: str | None, *,
    params: dict, threshold: float, as_of: str | None, database_url: str | None, engine: str, spark_master: str | None,
    json_output: bool,
) -> None:  # fmt: skip
    """``recgov train --engine spark``: the pack's filter and MLlib ALS on Spark, the lineage recorded as in process.

    No tuning (MLlib is fitted with the given parameters, else recgov's defaults) and no carbon
    measurement on Spark: the command says so rather than pretending."""
    from audits import open_store
    from audits.settings import get_settings
    from governance.cli._common import load_or_fail
    from governance.spark.batch import check_engine, train_spark_and_record
    from governance.spark.session import check_reachable, spark_master as checked_master

    with user_errors():
        check_engine(engine)
        if not pack:
            raise ConfigError("--engine spark trains only under a pack's rules: give --pack (e.g. --pack eu-gdpr-dsa)")
        # a bad URL, or a standalone master no connection reaches, is refused before the data is read or a JVM starts
        check_reachable(checked_master(spark_master))
    loaded = load_or_fail(pack, json_output=json_output)
    with user_errors():
        dataset = load_dataset(data, mapping, items=items, items_map=items_map, json_output=json_output, data_format=data_format)
        store = open_store(database_url)
        try:
            run, model = train_spark_and_record(
                dataset, loaded, store, models_dir=get_settings().home / "models", params=params,
                feedback=FeedbackConfig(rating_threshold=threshold), now=parse_as_of(as_of), master=spark_master,
            )  # fmt: skip
        finally:
            store.close()
    doc = {**run.to_dict(), "params": model.params, "users": len(model.user_ids), "items": len(model.item_ids), "tuned": False, "carbon": None}
    if json_output:
        emit_json(doc)
        return
    kept = doc["privacy_filter"]["events"]
    console.print(f"spark: model [bold]{doc['model_version']}[/] on {doc['users']:,} users x {doc['items']:,} items; trained on {kept['kept']:,} of {kept['total']:,} events (pack {loaded.name})", highlight=False)
    console.print(f"params {model.params} (not tuned on Spark; no carbon measurement on Spark)", highlight=False)
    console.print(f"recorded: training run {doc['training_run']}, model {doc['model_version']}, artifact {doc['artifact']}", highlight=False)


def register(app: typer.Typer) -> None:
    """Add the core commands to ``app``."""
    data_app = typer.Typer(help="Work with raw interaction data.", no_args_is_help=True)
    data_app.command("validate")(validate_command)
    data_app.command("purge")(purge_command)
    data_app.command("download")(download_command)
    app.add_typer(data_app, name="data")
    app.command("evaluate")(evaluate_command)
    app.command("train")(train_command)
