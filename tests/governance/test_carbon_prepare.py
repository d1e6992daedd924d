"""The tracker's CPU detection runs ahead of the measured fit, once.

codecarbon's tracker detected the CPU model at start, in a py-cpuinfo child process the gate waited for (a
second or more of its own time on a busy machine). :func:`governance.carbon.prepare` starts that detection in the
background while training filters and validates its events; :func:`governance.carbon.measure` waits for it, so
codecarbon keeps one answer and the measurement is the one it was.
"""

from __future__ import annotations

import pytest

from tests.fresh_interpreter import fresh


def test_prepare_detects_the_cpu_in_the_background_and_measure_uses_that_one_detection():
    seen = fresh(
        "import json, threading\n"
        "from codecarbon.core.util import detect_cpu_model\n"
        "from governance.carbon import measure, prepare\n"
        "prepare()\n"
        "prepare()\n"
        "threads = [t.name for t in threading.enumerate()]\n"
        "with measure('DEU') as meter:\n"
        "    pass\n"
        "info = detect_cpu_model.cache_info()\n"
        "print(json.dumps({'threads': threads.count('carbon-prepare'), 'detections': info.misses,\n"
        "    'measured': meter.facts is not None, 'method': meter.facts.method if meter.facts else None}))\n"
    )
    assert seen["threads"] == 1  # a second prepare starts nothing
    assert seen["detections"] == 1  # measure waited for it rather than detecting a second time alongside
    assert seen["measured"] and seen["method"].startswith("codecarbon ")


def test_prepare_does_nothing_when_carbon_is_not_measured():
    seen = fresh(
        "import json, threading\n"
        "from governance.carbon import prepare\n"
        "prepare(enabled=False)\n"
        "print(json.dumps({'threads': [t.name for t in threading.enumerate()].count('carbon-prepare')}))\n"
    )
    assert seen == {"threads": 0}


class _Stop(Exception):
    pass


@pytest.mark.parametrize("measure_carbon", [True, False])
def test_training_starts_the_detection_before_it_filters_its_events(monkeypatch, tmp_path, measure_carbon):
    import governance.training as training
    from recommender.synthetic import SyntheticSpec, generate

    calls: list[tuple[str, object]] = []
    monkeypatch.setattr(training, "prepare_carbon", lambda *, enabled: calls.append(("prepare", enabled)))

    def filtered(*args, **kwargs):
        calls.append(("filter", None))
        raise _Stop

    monkeypatch.setattr(training, "_training_events", filtered)
    data = generate(SyntheticSpec(n_users=20, n_items=10, n_interactions=200, seed=1))
    with pytest.raises(_Stop):
        training.train_and_record(data, store=None, models_dir=tmp_path, measure_carbon=measure_carbon)
    assert calls == [("prepare", measure_carbon), ("filter", None)]
