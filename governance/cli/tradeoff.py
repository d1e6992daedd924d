"""``recgov tradeoff DATA --pack PACK``: the accuracy-fairness front of the pack's re-ranking over a grid of its parameters.

A thin command over :func:`governance.tradeoff_front.tradeoff_front`: one ALS fit
and one candidate generation per ``--seeds`` split, then the pack's re-ranking
at every grid point; the front per fairness objective, the pack's point marked,
paired bootstrap comparisons (plain vs the pack's setting, and ``--compare I,J``)
and the users a group needs for a ``--detect-gap`` NDCG gap to be detectable.
With ``--out DIR`` it writes ``tradeoff.json`` (every point, its figures, which are
on the front, the lineage: data, split seeds and training-matrix hashes, ALS
parameters, steps) and ``tradeoff.png`` / ``tradeoff.svg``.

The fits see only the events the pack's consent rules allow, the events its audit
refits on (:func:`governance.cli.core.evaluation_data`, through
:func:`governance.audit_inputs.evaluation_events`: under an opt-in purpose a subject
without a consent record is left out; so are objections, refusals and erased
subjects' events up to their erasure); ``lineage.privacy_filter`` counts what was
left out per reason. When nothing is left, nothing is fitted or written.

Exit codes: 0 drawn, 2 bad usage or input (a pack without re-ranking, an unknown
step or parameter in ``--grid``, an empty grid, unreadable data, an ``--out``
that is a file, no event the pack allows to be profiled).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from governance.cli._common import RequiredPackOpt, console, emit_json, load_or_fail, opened_store, to_json, user_errors
from governance.cli.store import DatabaseUrl, store_errors
from governance.cli.core import DataArg, FormatOpt, ItemsMapOpt, ItemsOpt, JsonOpt, MapOpt, evaluation_data, left_out_line, load_dataset, print_rows
from recommender.errors import ConfigError

__all__ = ["register", "tradeoff_command"]


def _ints(text: str, option: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"{option} must be comma-separated whole numbers such as 0,1,2. Got {text!r} instead.") from None
    if not values or any(v < 0 for v in values):
        raise ConfigError(f"{option} must give at least one whole number, none negative. Got {text!r} instead.")
    return values


def _fmt(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def tradeoff_command(
    data: DataArg,
    pack_ref: RequiredPackOpt,
    grid: Annotated[
        Optional[list[str]],
        typer.Option("--grid", help="Override the values of one parameter: step.param=v1,v2,... (repeatable; e.g. fair_star.p=0.3,0.5,0.7).", show_default=False),
    ] = None,
    seeds: Annotated[str, typer.Option("--seeds", help="Split and fit seeds, comma-separated; figures are given per seed with their spread.")] = "0",
    n_boot: Annotated[int, typer.Option("--bootstrap", min=100, help="Bootstrap resamples of users per paired comparison.")] = 1000,
    detect_gap: Annotated[float, typer.Option("--detect-gap", min=1e-6, help="The NDCG gap between a group and the other users whose detectability is computed.")] = 0.02,
    compare: Annotated[Optional[str], typer.Option("--compare", help="Also compare two grid points I,J (paired bootstrap of J - I).", show_default=False)] = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="Folder to write tradeoff.json, tradeoff.png and tradeoff.svg into.", show_default=False)] = None,
    record: Annotated[
        Optional[str],
        typer.Option("--record", help="Record the front on the trail for this model version (shown in its regulator's report).", metavar="MODEL_VERSION", show_default=False),
    ] = None,
    database_url: DatabaseUrl = None,
    mapping: MapOpt = None,
    items: ItemsOpt = None,
    items_map: ItemsMapOpt = None,
    data_format: FormatOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Draw the accuracy-fairness front of the pack's re-ranking over a grid of its steps' parameters."""
    from governance.tradeoff_front import parse_grid, plot_front, tradeoff_front

    loaded = load_or_fail(pack_ref, json_output=json_output)
    with user_errors():
        seed_list = _ints(seeds, "--seeds")
        pair = None
        if compare is not None:
            pair = tuple(_ints(compare, "--compare"))
            if len(pair) != 2:
                raise ConfigError(f"--compare takes two grid point ids I,J. Got {compare!r} instead.")
        if out is not None and out.exists() and not out.is_dir():
            raise ConfigError(f"--out {str(out)!r} is a file; give a folder.")
        the_grid = parse_grid(grid or [], loaded.pack)  # before the data is loaded: a bad grid fails fast
    if record is not None:  # an unknown model version or an unreachable store fails before the work
        with store_errors(), opened_store(database_url) as store, store.session() as session:
            from audits.lineage import lineage_of

            lineage_of(session, record)
    with user_errors():
        dataset = load_dataset(data, mapping, items=items, items_map=items_map, json_output=json_output, data_format=data_format)
        from governance.family_inputs import refuse_banned_columns
        from recommender.family import get_family

        refuse_banned_columns(get_family("als"), loaded, dataset=dataset)  # before the store is read for the data's filter
        dataset, erased = evaluation_data(dataset, database_url, loaded)  # before any fit; refused when nobody is left
        result = tradeoff_front(dataset, loaded.pack, grid=the_grid, seeds=seed_list, n_boot=n_boot, detect_gap=detect_gap, compare=pair)
        result["lineage"]["privacy_filter"] = erased
    if record is not None:
        from governance.report.tradeoff_section import record_tradeoff

        with store_errors(), opened_store(database_url) as store, store.session() as session:
            seq = record_tradeoff(session, record, result)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "tradeoff.json").write_text(to_json(result) + "\n", encoding="utf-8")  # what the recorded digest is of
        plot_front(result, out / "tradeoff.png")
        plot_front(result, out / "tradeoff.svg")
        result["files"] = [str(out / n) for n in ("tradeoff.json", "tradeoff.png", "tradeoff.svg")]
    if record is not None:
        result["trail_seq"] = seq
    if json_output:
        emit_json(result)
        return
    left_out = left_out_line(erased)
    if left_out:
        console.print(left_out, highlight=False, soft_wrap=True)
    rows = []
    for p in result["points"]:
        rows.append({
            "id": str(p["id"]),
            "setting": "no re-ranking" if p["setting"] is None else ", ".join(f"{k}={v}" for k, v in p["setting"].items()),
            f"ndcg@{result['k']}": _fmt(p["ndcg"]["mean"]),
            **{name: _fmt(p[name]["mean"]) + (" *" if p["on_front"].get(name) else "") for name in result["objectives"]},
            "pack": "<-" if p["chosen"] else "",
        })  # fmt: skip
    print_rows(rows, title=f"front of {result['pack']['name']} (* on the front of that objective; mean over seeds {seeds})")
    for c in result["comparisons"]:
        nd = c["ndcg"]
        line = f"seed {c['seed']}: {c['b']} - {c['a']}: NDCG {nd['difference']:+.4f} [{_fmt(nd['interval'][0])}, {_fmt(nd['interval'][1])}]"
        if "exposure_gap" in c:
            eg = c["exposure_gap"]
            line += f", exposure gap {_fmt(eg['difference'])} [{_fmt(eg['interval'][0])}, {_fmt(eg['interval'][1])}]"
        console.print(line, highlight=False)
    small = [g for g in result["group_power"]["groups"] if g["too_small"]]
    gp = result["group_power"]
    for g in small:
        if g["users_needed"] is None:
            why = "cannot be detected whatever this group's size: the other users are too few"
        else:
            why = f"needs {g['users_needed']:,} users in it to be detected"
        console.print(
            f"seed {g['seed']}: group {g['attribute']}={g['group']} ({g['n_users']:,} test users): a {gp['gap']} gap in {gp['metric']} "
            f"{why} (alpha {gp['alpha']}, power {gp['power']})",
            highlight=False,
        )
    t = result["timing"]
    console.print(f"{t['points']} points in {t['total_seconds']:.1f}s (re-ranking {t['rerank_seconds']:.1f}s)", highlight=False)
    if out is not None:
        console.print(f"wrote {', '.join(result['files'])}", highlight=False)
    if record is not None:
        console.print(f"recorded on the trail for model {record} as event {result['trail_seq']}", highlight=False)


def register(app: typer.Typer) -> None:
    """Add ``recgov tradeoff``."""
    app.command("tradeoff")(tradeoff_command)
