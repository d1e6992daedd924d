"""Red team of the gate and its packs: rules that look binding but can never fail, groups left out of a
judgement without a word, and figures labelled as what they are not."""

from __future__ import annotations

import pytest

from governance.engine import evaluate
from governance.facts import AuditFacts
from governance.policy import PolicyError, parse_pack

HEAD = """\
apiVersion: recgov/v1
metadata: {name: redteam, version: 1.0.0, owner: tests}
"""


# -- non-finite numbers in a pack ---------------------------------------------------------------
NON_FINITE = [
    # (the pack's body with {v} for the number, the path refused, its line)
    ("data:\n  rules:\n    - {{id: dv, check: validation_findings, description: d, params: {{max_share: {{duplicate_events: {v}}}}}}}\n",
     "data.rules.0.params.max_share.duplicate_events", 5),
    ("quality:\n  rules:\n    - {{id: nov, check: metric_bound, description: d, params: {{metric: novelty, max: {v}}}}}\n",
     "quality.rules.0.params.max", 5),
    ("quality:\n  rules:\n    - {{id: cov, check: metric_bound, description: d, params: {{metric: coverage, min: {v}}}}}\n",
     "quality.rules.0.params.min", 5),
    ("training:\n  fairness: {{attribute: provider_group, side: provider, group_weights: {{indie: {v}}}}}\n",
     "training.fairness.group_weights.indie", 4),
    ("lifecycle:\n  canary:\n    guardrails:\n      - {{metric: provider_gap, max: {v}}}\n",
     "lifecycle.canary.guardrails.0.max", 6),
]


@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf"])
@pytest.mark.parametrize(("body", "path", "line"), NON_FINITE, ids=[path for _, path, _ in NON_FINITE])
def test_a_pack_holds_finite_numbers_only(body, path, line, value):
    """A NaN limit compares false with every figure: ``share > NaN`` never holds, so a validation rule with a
    NaN limit passed 90% duplicated rows; an infinite bound bounds nothing. Both are refused where they stand."""
    with pytest.raises(PolicyError) as caught:
        parse_pack(HEAD + body.format(v=value), "p.yaml")
    [issue] = [i for i in caught.value.issues if i.severity == "error"]
    assert (issue.path, issue.line) == (path, line)
    assert "finite number" in issue.message


def test_a_nan_limit_no_longer_passes_what_it_should_fail():
    """The case the refusal closes: a finite limit fails 90% duplicates, and a NaN one cannot be written."""
    body = NON_FINITE[0][0]
    facts = AuditFacts.model_validate({"validation": {"n_rows": 100, "findings": {"duplicate_events": {"count": 90, "share": 0.9}}}})
    assert evaluate(parse_pack(HEAD + body.format(v="0.01")), facts).result("dv").status.value == "fail"
    with pytest.raises(PolicyError):
        parse_pack(HEAD + body.format(v=".nan"))


def test_open_ended_bins_keep_their_infinite_edge():
    """Bins are the one place an infinite number means something: an open end."""
    pack = parse_pack(HEAD + "fairness:\n  audit_attributes: [age]\n  bins: {age: {edges: [0, 18, .inf], labels: [minor, adult]}}\n")
    assert pack.pack.fairness.bins["age"].edges == [0.0, 18.0, float("inf")]
    with pytest.raises(PolicyError, match="strictly increasing"):
        parse_pack(HEAD + "fairness:\n  audit_attributes: [age]\n  bins: {age: {edges: [.nan, 18, .inf], labels: [minor, adult]}}\n")


# -- provider exposure: a group shown with no test positive --------------------------------------
def _exposure_facts(recommended, item_groups, positives):
    """Fairness facts as the audit makes them: ``recommender.fairness.provider_exposure`` on the lists, then the
    audit's conversion (``governance.collect_fairness``), which stores no infinity."""
    import numpy as np
    import scipy.sparse as sp

    from governance.collect_fairness import _exposure
    from governance.facts import FairnessFacts
    from recommender.fairness import provider_exposure

    report = provider_exposure(np.array(recommended), item_groups, sp.csr_matrix(np.array(positives)), attention="uniform", n_boot=50)
    return AuditFacts(fairness=FairnessFacts(k=len(recommended[0]), provider_attribute="provider", exposure={"uniform": _exposure(report, True)}))


EXPOSURE_PACK = HEAD + """\
fairness:
  provider_attribute: provider
  rules:
    - {id: no-over-exposure, check: provider_exposure, description: d, params: {attention: uniform, min_group_size: 2, %s}}
"""
# Four users, items 0-1 major, 2-3 indie, 4-5 promo. Every list shows a major item and a promo item; the test
# positives are all major or indie: the promo group holds half the attention and none of the demand.
LISTS = [[0, 4], [1, 5], [0, 5], [1, 4]]
GROUPS = ["major", "major", "indie", "indie", "promo", "promo"]
POSITIVES = [[1, 0, 1, 0, 0, 0], [0, 1, 0, 1, 0, 0], [1, 0, 0, 0, 0, 0], [0, 1, 0, 0, 0, 0]]


def test_a_provider_group_shown_without_any_test_positive_is_over_exposed():
    """By hand: promo's exposure share is 1/2, its relevance share 0, so its ratio exposure / relevance is
    infinite. The facts store it as null; the rule used to leave such a group out of its judgement without a
    word and pass on the others (major 0.5 / 0.75 = 0.667, indie 0 / 0.25 = 0)."""
    facts = _exposure_facts(LISTS, GROUPS, POSITIVES)
    promo = facts.fairness.exposure["uniform"].groups["promo"]
    assert (promo.exposure_share, promo.relevance_share, promo.exposure_ratio) == (0.5, 0.0, None)
    assert facts.fairness.exposure["uniform"].groups["major"].exposure_ratio == pytest.approx(0.5 / 0.75)

    result = evaluate(parse_pack(EXPOSURE_PACK % "max_ratio: 1.5"), facts).result("no-over-exposure")
    assert result.status.value == "fail"
    assert result.evidence["failing"] == ["promo"] and result.evidence["shown_without_relevance"] == ["promo"]
    assert "promo shown without any test positive (ratio unbounded)" in result.message
    assert result.value is None  # no infinity in a gate document (JSON has none)


def test_a_group_shown_without_demand_is_never_under_exposed_and_its_share_is_judged():
    facts = _exposure_facts(LISTS, GROUPS, POSITIVES)
    under = evaluate(parse_pack(EXPOSURE_PACK % "min_ratio: 0.5"), facts).result("no-over-exposure")
    assert (under.status.value, under.evidence["failing"]) == ("fail", ["indie"])  # indie: 0 / 0.25; promo is not under
    share = evaluate(parse_pack(EXPOSURE_PACK % "max_share: 0.4"), facts).result("no-over-exposure")
    assert (share.status.value, share.evidence["failing"]) == ("fail", ["major", "promo"])  # 0.5 each


def test_a_group_neither_shown_nor_relevant_is_said_not_judged():
    groups = ["major", "major", "indie", "indie", "idle", "idle"]
    lists = [[0, 2], [1, 3], [0, 3], [1, 2]]
    facts = _exposure_facts(lists, groups, POSITIVES)
    result = evaluate(parse_pack(EXPOSURE_PACK % "max_ratio: 2.5"), facts).result("no-over-exposure")
    assert result.status.value == "pass"  # major 0.5 / 0.75, indie 0.5 / 0.25 = 2
    assert "neither shown nor has test positives" in result.evidence["not_judged"]["idle"]


# -- carbon: the grid's country, and a measurement that failed -----------------------------------
def test_a_country_codecarbon_has_no_grid_for_is_refused_where_it_stands():
    """codecarbon's offline tracker computes the emissions of a country it has no energy mix for with the world
    average and says so only in a log line recgov silences: a pack naming GER (Germany's sports code) stored
    world-average figures labelled as Germany's."""
    from codecarbon.core.emissions import Emissions
    from codecarbon.core.units import Energy
    from codecarbon.external.geography import GeoMetadata
    from codecarbon.input import DataSource

    emissions = Emissions(DataSource())
    kwh = Energy.from_energy(kWh=1.0)
    world = emissions.get_country_emissions(kwh, GeoMetadata(country_iso_code="ZZZ"))
    assert emissions.get_country_emissions(kwh, GeoMetadata(country_iso_code="GER")) == world  # silently the world's
    assert emissions.get_country_emissions(kwh, GeoMetadata(country_iso_code="DEU")) != world

    with pytest.raises(PolicyError) as caught:
        parse_pack(HEAD + "carbon:\n  country_iso_code: GER\n", "p.yaml")
    [issue] = caught.value.issues
    assert (issue.path, issue.line) == ("carbon.country_iso_code", 4)
    assert "'GER' is not a country codecarbon has grid data for" in issue.message and "did you mean DEU?" in issue.message
    assert parse_pack(HEAD + "carbon:\n  country_iso_code: DEU\n").pack.carbon.country_iso_code == "DEU"


@pytest.mark.parametrize("code", ["GER", "ZZZ", "ger", "Germany"])
def test_the_country_option_names_a_grid_codecarbon_knows(code):
    from governance.carbon import check_country
    from recommender.errors import ConfigError

    with pytest.raises(ConfigError, match="--country"):
        check_country(code)
    assert check_country("FRA") == "FRA"


def test_an_unknown_grid_is_refused_before_the_measured_block_runs():
    from governance.carbon import measure
    from recommender.errors import ConfigError

    ran = []
    with pytest.raises(ConfigError, match="'ZZZ' is not a country"):
        with measure("ZZZ"):
            ran.append(True)
    assert ran == []


class _BrokenTracker:
    """codecarbon's tracker when its own start or stop failed: both swallow the exception, stop returns None and
    no final data is left."""

    def __init__(self, **kwargs):
        pass

    def start(self):
        pass

    def stop(self):
        return None


def test_a_measurement_codecarbon_swallowed_is_none_not_zero(monkeypatch):
    import codecarbon

    from governance.carbon import measure

    monkeypatch.setattr(codecarbon, "OfflineEmissionsTracker", _BrokenTracker)
    with measure("DEU") as meter:
        pass
    assert meter.facts is None and "codecarbon measured nothing" in meter.failure
    # and the block's own exception is never swallowed by the bookkeeping
    with pytest.raises(KeyError):
        with measure("DEU"):
            raise KeyError("the training failed")


# -- the gate's block_on ---------------------------------------------------------------------------
GATE_PACK = HEAD + """\
quality:
  rules:
    - {id: lift, check: baseline_lift, description: d, params: {min_ratio: 1.2}}
    - {id: cov, check: metric_bound, description: d, severity: %s, params: {metric: coverage, min: 0.05}}
gate:
  block_on: %s
"""
FAILING = AuditFacts.model_validate({"evaluation": {"models": {"als": {"metrics": {"ndcg": 0.1}, "beyond": {"coverage": 0.5}},
                                                              "popularity": {"metrics": {"ndcg": 0.1}}}}})


@pytest.mark.parametrize("block_on", ["[warn, error]", "[error]", "[skipped]", "[]"])
def test_a_gate_that_leaves_out_fail_is_refused_while_rules_say_a_failure_blocks(block_on):
    """``block_on: [warn, error]`` reads stricter than the default (even a warning blocks) but let a failed rule
    of severity block through: the gate passed a model no better than popularity."""
    from governance.gate import decide
    from governance.policy import GateSection

    with pytest.raises(PolicyError) as caught:
        parse_pack(GATE_PACK % ("warn", block_on), "p.yaml")
    [issue] = caught.value.issues
    assert (issue.path, issue.line) == ("gate.block_on", 8)
    assert "leaves out fail, so the rules of severity block (lift) would not block a release" in issue.message
    # what the refusal prevents: the same rules under that gate, lift failing, and the release let through
    loaded = parse_pack(GATE_PACK % ("warn", "[fail, error]"))
    report = evaluate(loaded, FAILING)
    assert report.result("lift").status.value == "fail"
    assert decide(report, GateSection.model_validate({"block_on": ["warn", "error"]})).passed is True


def test_a_gate_of_advisory_rules_only_may_leave_out_fail():
    loaded = parse_pack(GATE_PACK.replace("params: {min_ratio: 1.2}", "severity: warn, params: {min_ratio: 1.2}") % ("warn", "[warn, error]"))
    assert loaded.pack.gate.block_on == ["warn", "error"]


def test_a_carbon_budget_that_is_never_measured_is_a_warning():
    body = "carbon:\n  measure: false\n  rules:\n    - {id: budget, check: carbon_budget, description: d, params: {max_energy_kwh: 1}}\n"
    [warning] = parse_pack(HEAD + body, "p.yaml").warnings
    assert (warning.path, warning.line, warning.severity) == ("carbon.measure", 4, "warning")
    assert "rule(s) budget are skipped" in warning.message
    assert parse_pack(HEAD + body.replace("false", "true")).warnings == []


def test_carbon_figures_say_whether_they_are_measured_or_estimated_and_on_which_grid(monkeypatch):
    """A run on a machine without RAPL counters (most VMs and CI runners) is an estimate: TDP x load, RAM from its
    size. The recorded method said only 'cpu tdp-x-load', never the word estimate, nor the grid whose intensity was
    applied, so a recorded model's figures judged later under another pack carried no grid at all."""
    from governance.carbon import _method
    from governance.facts import CarbonFacts

    estimated = _method("3.3.2", "DEU", "tdp-x-load (TDP 8 W)", False)
    assert estimated == "codecarbon 3.3.2 offline, estimated; grid DEU; cpu tdp-x-load (TDP 8 W); ram size-estimate; gpu none"
    assert _method("3.3.2", "USA", "rapl", True).startswith("codecarbon 3.3.2 offline, measured; grid USA; cpu rapl;")
    assert len(_method("3.3.2", "USA", "tdp-x-load (TDP 1000000 W)", True)) <= 100  # the store keeps 100 characters

    pack = parse_pack(HEAD + "carbon:\n  rules:\n    - {id: budget, check: carbon_budget, description: d, params: {max_energy_kwh: 1}}\n")
    recorded = CarbonFacts(energy_kwh=0.5, emissions_kg=0.2, duration_s=60.0, method=estimated)  # as a recorded run's facts
    message = evaluate(pack, AuditFacts(carbon=recorded)).result("budget").message
    assert "(estimated, DEU grid)" in message
    bare = CarbonFacts(energy_kwh=0.5, emissions_kg=0.2, duration_s=60.0, method="")
    assert evaluate(pack, AuditFacts(carbon=bare)).result("budget").message.endswith("in 60.0 s; budget energy <= 1.0 kWh")


# -- explanation tags of provider re-ranking --------------------------------------------------------
@pytest.fixture(scope="module")
def provider_world():
    from recommender.als import ALSRecommender
    from recommender.feedback import to_implicit
    from recommender.synthetic import SyntheticSpec, generate

    data = generate(SyntheticSpec(n_users=300, n_items=200, n_interactions=15000, seed=9, exposure_bias=3))
    return data, to_implicit(data.events), ALSRecommender(factors=8, iterations=5).fit(to_implicit(data.events))


TAG_PACK = HEAD + """\
consent:
  purposes:
    personalization: {lawful_basis: legitimate_interest, model: opt_out}
fairness:
  provider_attribute: provider_group
  protected_provider_group: independent
reranking:
  enabled: true
  steps: [%s]
"""


@pytest.mark.parametrize(
    "step",
    [
        "{name: group_proportions, params: {targets: {0: 0.6, 1: 0.4}}}",
        "{name: exposure_targets, params: {targets: {0: 0.6, 1: 0.4}, tolerance: 0.1}}",
        "{name: fair_star, params: {p: 0.6}}",
    ],
)
def test_an_item_tagged_from_an_under_exposed_provider_is_from_the_protected_group(provider_world, step):
    """Multi-group steps lift an item of any group short of its target in the list, the major labels' too (whom the
    synthetic log over-exposed three times): every lifted item read "From an under-exposed provider". Only items of
    the protected group may say so; a major label's item lifted to its target says it keeps the list's mix."""
    from governance.serving import ServeRequest, ServingEngine

    data, matrix, model = provider_world
    engine = ServingEngine(parse_pack(TAG_PACK % step), model, data.items)
    group = data.items["provider_group"].astype(str).to_dict()
    kinds = {}
    for row in range(0, 300, 3):
        served = engine.serve(ServeRequest(str(matrix.user_ids[row]), k=10))
        assert served.mode == "personalized" and len(served.items) == len(set(served.items)) == 10
        for item, tags in zip(served.items, served.tags, strict=True):
            for tag in tags:
                kinds.setdefault(tag["kind"], set()).add(group[item])
    assert kinds.get("under_exposed_provider", set()) <= {"independent"}
    if "fair_star" in step:  # FA*IR lifts protected items only
        assert "provider_balance" not in kinds and kinds["under_exposed_provider"] == {"independent"}
    else:  # both groups get lifted to their targets somewhere, each tagged for what it is
        assert kinds["under_exposed_provider"] == {"independent"} and kinds["provider_balance"] == {"major"}


def test_a_quality_rule_on_data_too_small_to_split_says_so():
    """Five users and twenty events leave the split no test positive: every metric is None and the rules said
    "metric 'ndcg' of model 'als' is not in the evaluation", as if the pack named a metric that does not exist."""
    from governance.collect import collect_facts
    from recommender.synthetic import SyntheticSpec, generate

    pack = parse_pack(HEAD + "quality:\n  tune: false\n  rules:\n"
                      "    - {id: lift, check: baseline_lift, description: d, params: {min_ratio: 1.2}}\n"
                      "    - {id: floor, check: metric_bound, description: d, params: {metric: ndcg, min: 0.01}}\n")
    facts, _ = collect_facts(pack.pack, generate(SyntheticSpec(n_users=5, n_items=5, n_interactions=20, seed=1)), als_params={"factors": 4, "iterations": 2})
    assert facts.evaluation.models["als"].n_test_users == 0
    report = evaluate(pack, facts)
    for rule in ("lift", "floor"):
        result = report.result(rule)
        assert result.status.value == "skipped"
        assert result.message == "model 'als' was evaluated on no test user (the split held no test positive: too little data); metric 'ndcg' is not measured"


def test_an_exposure_cap_no_list_of_the_pack_s_groups_can_meet_is_a_warning():
    """Two provider groups capped at 30% each fill at most 60% of a list: the cap can never hold, the step
    alternates groups and every list is reported as breaking it. The pack loaded without a word."""
    import numpy as np

    from governance.rerank import Candidates, ExposureCapConfig, build_pipeline

    rng = np.random.default_rng(0)
    cands = Candidates(items=np.stack([rng.permutation(40)[:30] for _ in range(50)]), scores=-np.sort(-rng.random((50, 30)), axis=1),
                       item_group=rng.integers(0, 2, 40))
    out = build_pipeline([ExposureCapConfig(max_share=0.3)])(cands, k=10)
    assert not any(met.any() for met in out.constraints_met.values())  # no list meets it

    body = TAG_PACK % "{name: exposure_cap, params: {max_share: 0.3}}"
    [warning] = parse_pack(body, "p.yaml").warnings
    assert warning.path == "reranking.steps.0.params.max_share" and "can never be met" in warning.message
    assert parse_pack(TAG_PACK % "{name: exposure_cap, params: {max_share: 0.5}}").warnings == []
    assert parse_pack(TAG_PACK % "{name: exposure_cap, params: {max_share: 0.3, groups: [0]}}").warnings == []


# -- through the command line, on SQLite and PostgreSQL ----------------------------------------------
CARBON_PACK = HEAD + """\
carbon:
  country_iso_code: DEU
  rules:
    - {id: budget, check: carbon_budget, description: d, params: {max_energy_kwh: 10}}
quality:
  tune: false
"""
SMALL = "synthetic:n_users=200,n_items=120,n_interactions=6000,seed=5"


def _strict_json(text: str):
    import json

    def refuse(constant: str):
        raise ValueError(f"not JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


def test_a_gate_records_and_says_how_its_carbon_was_obtained_and_an_unknown_grid_changes_nothing(db_url, tmp_path):
    from sqlalchemy import func, select
    from typer.testing import CliRunner

    from audits import open_store
    from audits.models import AuditRun, TrailEvent, TrainingRun
    from governance.cli import app

    runner = CliRunner()
    pack = tmp_path / "pack.yaml"
    pack.write_text(CARBON_PACK)
    store = open_store(db_url)

    def counts():
        with store.session() as s:
            return [s.scalar(select(func.count()).select_from(t)) for t in (TrainingRun, AuditRun, TrailEvent)]

    try:
        before = counts()
        (tmp_path / "ger.yaml").write_text(CARBON_PACK.replace("DEU", "GER"))
        wrong = runner.invoke(app, ["gate", SMALL, "--pack", str(tmp_path / "ger.yaml"), "--out", str(tmp_path / "w"), "--database-url", db_url])
        assert wrong.exit_code == 2 and "carbon.country_iso_code" in wrong.output and "did you mean DEU?" in wrong.output
        train = runner.invoke(app, ["train", SMALL, "--country", "GER", "--database-url", db_url])
        assert train.exit_code == 2 and "--country: 'GER' is not a country" in train.output
        assert counts() == before  # nothing recorded

        done = runner.invoke(app, ["gate", SMALL, "--pack", str(pack), "--out", str(tmp_path / "g"), "--database-url", db_url, "--json"])
        assert done.exit_code == 0, done.output
        doc = _strict_json(done.stdout)
        _strict_json((tmp_path / "g" / "gate.json").read_text())
        [budget] = [r for r in doc["results"] if r["rule_id"] == "budget"]
        basis = "measured" if "cpu rapl" in budget["evidence"]["method"] else "estimated"
        assert f"({basis}, DEU grid)" in budget["message"]
        with store.session() as s:
            method = s.scalar(select(TrainingRun.carbon_method).where(TrainingRun.id == s.scalar(select(func.max(TrainingRun.id)))))
        assert method.startswith(f"codecarbon ") and f" offline, {basis}; grid DEU; cpu " in method
    finally:
        store.close()


# -- policy diff: which way each change goes -----------------------------------------------------------
DIFF_A = HEAD + """\
fairness:
  audit_attributes: [gender]
  rules:
    - {id: gap, check: consumer_gap, description: d, params: {attribute: gender, metric: ndcg, min_ratio: 0.8, min_group_size: 30}}
quality:
  rules:
    - {id: lift, check: baseline_lift, description: d, params: {min_ratio: 1.2}}
    - {id: cov, check: metric_bound, description: d, params: {metric: coverage, min: 0.05}}
gate:
  required_rules: [lift]
"""
# Every threshold the reader looks at goes up; the rules themselves stop blocking.
DIFF_B = DIFF_A.replace("min_ratio: 0.8, min_group_size: 30", "min_ratio: 0.9, min_group_size: 500, judge: ci").replace(
    "params: {min_ratio: 1.2}", "severity: warn, params: {min_ratio: 1.5}").replace(
    "required_rules: [lift]", "required_rules: []").replace(
    "    - {id: cov, check: metric_bound, description: d, params: {metric: coverage, min: 0.05}}\n", "")


def test_a_pack_that_reads_stricter_says_where_it_is_looser():
    """B raises both thresholds a reader compares (0.8 -> 0.9, 1.2 -> 1.5), and also judges the gap on its interval,
    leaves groups under 500 users unjudged, makes the lift rule a warning, drops it from the required rules and
    removes the coverage rule: the diff listed every line and said nothing of which way they go."""
    from governance.policydiff import diff_packs

    a, b = parse_pack(DIFF_A, "a.yaml"), parse_pack(DIFF_B, "b.yaml")
    effects = {c.path: c.effect for c in diff_packs(a, b)}
    assert effects == {
        "rule:cov": "looser",
        "gate.required_rules": "looser",
        "rule:gap.params.judge": "looser",
        "rule:gap.params.min_group_size": "looser",
        "rule:gap.params.min_ratio": "stricter",
        "rule:lift.params.min_ratio": "stricter",
        "rule:lift.severity": "looser",
    }
    assert {c.path: c.effect for c in diff_packs(b, a)} == {
        p: {"stricter": "looser", "looser": "stricter"}[e] for p, e in effects.items()
    }


def test_policy_diff_counts_the_stricter_and_looser_changes(tmp_path):
    from typer.testing import CliRunner

    from governance.cli import app

    (tmp_path / "a.yaml").write_text(DIFF_A)
    (tmp_path / "b.yaml").write_text(DIFF_B)
    out = CliRunner().invoke(app, ["policy", "diff", str(tmp_path / "a.yaml"), str(tmp_path / "b.yaml")])
    assert out.exit_code == 0, out.output
    assert "7 change(s), 2 stricter, 5 looser" in out.stdout
    assert "~ rule:lift.severity: 'block' -> 'warn'  (looser)" in out.stdout
    doc = CliRunner().invoke(app, ["policy", "diff", str(tmp_path / "a.yaml"), str(tmp_path / "b.yaml"), "--json"])
    assert {c["path"]: c["effect"] for c in _strict_json(doc.stdout)["changes"]}["gate.required_rules"] == "looser"


# -- YAML tags ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("!!python/object/apply:os.system [echo pwned]", "!!python/object/apply:os.system"),
        ("!!set {a, b}", "!!set"),
        ("!!binary aGk=", "!!binary"),
        ("!secret 10", "!secret"),
    ],
)
def test_a_tag_outside_plain_yaml_is_refused_where_it_stands(value, shown):
    """A tagged sequence made the loader crash (TypeError in the positions of the tree: a traceback and exit 1
    from recgov policy validate, a 500 from POST /v1/packs/validate); a tagged scalar was refused with the
    repr of ruamel's node."""
    with pytest.raises(PolicyError) as caught:
        parse_pack(HEAD + f"quality:\n  k: {value}\n", "p.yaml")
    [issue] = caught.value.issues
    assert (issue.line, issue.column) == (4, 6)
    assert issue.message.startswith(f"the YAML tag {shown} is not allowed")


def test_plain_tags_still_load():
    loaded = parse_pack(HEAD + "quality:\n  k: !!int 12\n  split: ! time\n")
    assert (loaded.pack.quality.k, loaded.pack.quality.split) == (12, "time")


def test_policy_validate_refuses_a_tagged_sequence_with_exit_2(tmp_path):
    from typer.testing import CliRunner

    from governance.cli import app

    path = tmp_path / "p.yaml"
    path.write_text(HEAD + "quality:\n  k: !!python/object/apply:os.system [echo pwned]\n")
    out = CliRunner().invoke(app, ["policy", "validate", str(path), "--json"])
    assert out.exit_code == 2, out.output
    [issue] = _strict_json(out.stdout)["issues"]
    assert issue["line"] == 4 and "!!python/object/apply:os.system is not allowed" in issue["message"]


# -- JUnit of messages that name data --------------------------------------------------------------
def test_a_group_label_with_a_control_character_leaves_junit_readable(tmp_path):
    """A provider group read from an item table whose label holds a vertical tab (a CSV exported from a
    spreadsheet) is named in the rule's message: junit.xml carried the raw character, which XML 1.0 cannot hold,
    and every JUnit parser refused the whole report, so the CI job could not show the failure."""
    from junitparser import Failure, JUnitXml

    from governance.gate import decide, document, write_outputs

    groups = ["major", "major", "in\x0bdie", "in\x0bdie", "promo", "promo"]  # inside: blanks around a label are dropped
    report = evaluate(parse_pack(EXPOSURE_PACK % "max_ratio: 1.5"), _exposure_facts(LISTS, groups, POSITIVES))
    assert "in\x0bdie" in report.result("no-over-exposure").evidence["groups"]
    doc = document(report, decide(report, parse_pack(EXPOSURE_PACK % "max_ratio: 1.5").pack.gate))
    paths = write_outputs(doc, tmp_path)
    [case] = list(next(iter(JUnitXml.fromfile(str(paths["junit"])))))
    [failure] = [r for r in case.result if isinstance(r, Failure)]
    assert doc.decision.passed is False and "promo shown without any test positive" in failure.message
    report2 = evaluate(parse_pack(EXPOSURE_PACK % "min_ratio: 0.5"), _exposure_facts(LISTS, groups, POSITIVES))
    doc2 = document(report2, decide(report2, parse_pack(EXPOSURE_PACK % "min_ratio: 0.5").pack.gate))
    [case2] = list(next(iter(JUnitXml.fromfile(str(write_outputs(doc2, tmp_path / "2")["junit"])))))
    [failure2] = [r for r in case2.result if isinstance(r, Failure)]
    assert "in\\x0bdie 0.000" in failure2.message  # the label, its control character written out
    _strict_json(paths["json"].read_text())  # gate.json keeps the label as JSON escapes it


# -- NaN figures -----------------------------------------------------------------------------------------
def test_an_undefined_drift_is_skipped_not_passed_by_the_feature_beside_it():
    """``max`` over the features kept the first one when a NaN came second: a drift rule passed on user activity
    alone while item popularity's drift was undefined."""
    pack = parse_pack(HEAD + "data:\n  rules:\n    - {id: drift, check: data_drift, description: d, params: {max: 0.25}}\n")
    facts = AuditFacts.model_validate({"drift": {"baseline": "b", "features": {"user_activity": {"psi": 0.01}, "item_popularity": {"psi": float("nan")}}}})
    result = evaluate(pack, facts).result("drift")
    assert (result.status.value, result.message) == ("skipped", "drift statistic 'psi' of 'item_popularity' is undefined (the baseline or the data holds no event)")


def test_a_verdict_on_a_non_finite_figure_is_an_error():
    """A NaN compares false with every bound: whatever the check concluded from it means nothing, and the audit
    record cannot hold it (the audit then failed at recording, after the model was trained)."""
    pack = parse_pack(HEAD + "quality:\n  rules:\n    - {id: floor, check: metric_bound, description: d, params: {metric: ndcg, min: 0.1}}\n")
    facts = AuditFacts.model_validate({"evaluation": {"models": {"als": {"metrics": {"ndcg": float("nan")}}}}})
    result = evaluate(pack, facts).result("floor")
    assert result.status.value == "error" and result.value is None
    assert result.message.startswith("check 'metric_bound' measured a non-finite value (nan): ndcg@10 of als is nan")


def test_an_empty_baseline_is_refused_before_anything_is_trained_or_recorded(db_url, tmp_path):
    """The drift of an empty baseline is NaN: the gate trained and recorded a model, then failed at recording the
    audit with "$[1].value: nan is not a finite number; JSON cannot hold it"."""
    from sqlalchemy import func, select
    from typer.testing import CliRunner

    from audits import open_store
    from audits.models import AuditRun, ModelVersion, TrailEvent, TrainingRun
    from governance.cli import app

    (tmp_path / "empty.csv").write_text("user_id,item_id,timestamp\n")
    store = open_store(db_url)
    try:
        def counts():
            with store.session() as s:
                return [s.scalar(select(func.count()).select_from(t)) for t in (TrainingRun, ModelVersion, AuditRun, TrailEvent)]

        before = counts()
        out = CliRunner().invoke(app, ["gate", SMALL, "--pack", "baseline", "--baseline", str(tmp_path / "empty.csv"),
                                       "--out", str(tmp_path / "g"), "--database-url", db_url])
        assert out.exit_code == 2, out.output
        assert "the baseline data set 'empty' holds no event: drift cannot be measured against it" in out.output
        assert counts() == before and not (tmp_path / "g").exists()
    finally:
        store.close()


def test_a_label_with_a_line_break_stays_in_its_markdown_row():
    """summary.md put a rule's message in a table cell as it was: a group label holding a line break ended the row
    there and spilled the rest of the message (and the next rows' alignment) out of the table."""
    from governance.gate import decide, document, to_markdown

    groups = ["major", "major", "indie\nlabel", "indie\nlabel", "promo", "promo"]
    loaded = parse_pack(EXPOSURE_PACK % "min_ratio: 0.5")
    report = evaluate(loaded, _exposure_facts(LISTS, groups, POSITIVES))
    md = to_markdown(document(report, decide(report, loaded.pack.gate)))
    rows = [line for line in md.splitlines() if line.startswith("| FAIL")]
    assert len(rows) == 1 and "indie label 0.000" in rows[0] and rows[0].endswith("|")
    assert all(line.startswith("|") for line in md.split("|---|")[1].splitlines()[1:] if line and not line.startswith(("**", "-")))
