"""The Spark audit's offline evaluation refits only on subjects the pack lets a model learn from (as in-process)."""

from __future__ import annotations

import pytest
from report_store import CONSENTED_DATA, ConsentedStore, consent_denied

from audits import open_store
from governance.packs import resolve_pack
from governance.policy import load_pack
from recommender.loaders import load_data


class _Stop(Exception):
    pass


def test_the_spark_evaluation_sees_only_who_may_be_profiled(consented_store: ConsentedStore, monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("RECGOV_HOME", str(consented_store.root / "home"))
    import governance.spark.evaluate as evaluate
    from governance.spark.gate import spark_audit_facts

    seen: dict[str, set[str]] = {}

    def capture(spark, audited, loaded, als_params=None):  # the events handed to the executors, then stop
        seen["users"] = set(audited.events["user_id"].astype(str))
        raise _Stop

    monkeypatch.setattr(evaluate, "spark_evaluation_run", capture)
    store = open_store(consented_store.url)
    try:
        with pytest.raises(_Stop):
            spark_audit_facts(load_pack(resolve_pack("eu-gdpr-dsa")), load_data(CONSENTED_DATA), store=store, model_version=None,
                              train=False, baseline=None, models_dir=tmp_path, actor=None, spark=object())
    finally:
        store.close()
    assert seen["users"] and not any(consent_denied(int(u[1:])) for u in seen["users"])
