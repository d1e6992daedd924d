"""Experiment looks, red-teamed: an erased subject is no longer analysed (on SQLite and PostgreSQL)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from governance.experiments import lifecycle
from governance.experiments.spec import parse_experiment
from tests.governance.test_experiment_guardrails import SAME, SUBJECTS, _model, _plan_file, _serve

pytestmark = pytest.mark.usefixtures("fixed_experiment_salts")


def test_an_erased_subject_is_left_out_of_every_look_and_the_status(store: Any, tmp_path: Path) -> None:
    """Erasure deletes a subject's outcome events but keeps their decisions under the shredded pseudonym: counted, they
    would enter the look as a subject who never clicked. They are left out, and counted per arm as excluded."""
    from governance.packs import shipped_pack_path
    from governance.policy import load_pack
    from governance.privacy.erasure import erase_subject

    with store.session() as session:
        control, treatment = _model(session, "ec"), _model(session, "et")
    path = _plan_file(tmp_path, "erasures", control, treatment)
    lifecycle.plan(store, parse_experiment(path.read_text(), str(path)), actor="tester")
    lifecycle.start(store, "erasures", actor="tester")
    counts = _serve(store, "erasures", SUBJECTS, {"control": SAME, "treatment": {**SAME, "click": 1.0}}, np.random.default_rng(3), lists=1)
    erased = SUBJECTS[:40]
    pack = load_pack(shipped_pack_path("eu-gdpr-dsa"))
    for subject in erased:
        erase_subject(store, subject, pack=pack, measure_residual=False, measure_carbon=False)
    look = lifecycle.analyze(store, "erasures", actor="tester", metric="clicks_per_subject")
    analysed = sum(sum(reasons.values()) for reasons in look["counts"].values())
    assert analysed == sum(counts.values()) - len(erased)
    assert sum(look["consent"]["excluded"]["erased_subjects"].values()) == len(erased)
    state = lifecycle.status(store, "erasures", actor="tester")
    assert state["consent"]["excluded"] == look["consent"]["excluded"]
