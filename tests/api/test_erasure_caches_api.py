"""Over real HTTP, on SQLite and PostgreSQL: what an exact erasure replaces leaves the service at once.

Regressions: (1) an exact erasure refit only the newest version of an ALS lineage, so the older version an
approximate erasure had kept (deployed, its file listing every subject it was trained on) still listed the erased
subject; (2) the ALS model the service held loaded stayed in its caches, and in the compute process, until the
next request for it (answered 409 ``model-replaced``). Now every version of the lineage that lists the subject is
replaced and its file deleted, and the erasure drops the replaced models from the caches as it answers.
"""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from audits.lineage import record_deployment
from governance.cli import app as cli
from tests.files_naming import files_naming

# subjects of their own: u000320 and above are in no model the module's server trained, u000360 and above in
# no model of the first test
DATA = "synthetic:n_users=360,n_items=120,n_interactions=9000,seed=11"


def _train(server, data: str = DATA) -> dict:  # noqa: ANN001
    trained = CliRunner().invoke(cli, ["train", data, "--no-tune", "--no-carbon", "--factors", "8", "--iterations", "4",
                                       "--database-url", server.db_url, "--json", "--pack", "baseline"])  # fmt: skip
    assert trained.exit_code == 0, trained.output
    return json.loads(trained.stdout)


def _ask(client, subject: str, version: str):  # noqa: ANN001
    return client.post("/v1/recommendations", json={"subject": subject, "k": 5, "model_version": version, "pack": "baseline"})


def _holds(cache, version: str, model) -> bool:  # noqa: ANN001
    """Whether the engine cache keeps ``version`` (or the ``model`` object) anywhere."""
    with cache._lock:
        models = [entry[1] for entry in cache._models.values()]
        engines = [(key, e.engine) for key, e in cache._engines.items()]
        return version in cache._models or any(m is model for m in models) or any(
            key[1] == version or engine.model is model for key, engine in engines
        )


def test_an_erasure_drops_the_replaced_model_from_the_caches_and_the_compute_process_at_once(server) -> None:
    doc = _train(server)
    old, subject = doc["model_version"], "u000344"
    with server.store.session() as session:
        record_deployment(session, model_version=old, stage="shadow")
    cache = server.app.state.engines
    with server.client("operator") as client:
        assert _ask(client, "u000345", old).status_code == 200
    tokens = set(cache._tokens.get(old, set()))
    assert tokens, "no engine was built for the version"
    model = cache._models[old][1]
    assert _holds(cache, old, model)
    told: list[set[str]] = []
    compute = cache.compute
    if compute is not None:  # the drop goes to the compute process whatever it holds at that moment
        real = compute.drop_soon
        compute.drop_soon = lambda dropped: (told.append(set(dropped)), real(dropped))[1]  # type: ignore[method-assign]
    try:
        with server.client("admin") as client:
            erased = client.post("/v1/requests/erasure", json={"subject": subject, "pack": "baseline"})
    finally:
        if compute is not None:
            del compute.drop_soon
    assert erased.status_code == 200, erased.text
    assert not _holds(cache, old, model)  # gone as the erasure answered, before any request names the version
    assert old not in cache._tokens
    if compute is not None:
        assert told and tokens <= set().union(*told), "the compute process was not told to drop the replaced model"
        assert not tokens & set(compute._held)


def test_an_exact_erasure_over_http_replaces_the_older_version_an_approximate_one_kept(server) -> None:
    doc = _train(server, "synthetic:n_users=400,n_items=120,n_interactions=10000,seed=12")
    first, folder = doc["model_version"], Path(doc["artifact"]).parent
    with server.store.session() as session:
        record_deployment(session, model_version=first, stage="shadow")
    with server.client("admin") as client:
        approx = client.post("/v1/requests/erasure", json={"subject": "u000390", "pack": "baseline", "approximate": True})
        assert approx.status_code == 200, approx.text
        assert Path(doc["artifact"]).exists() and files_naming(folder, "u000391")
        erased = client.post("/v1/requests/erasure", json={"subject": "u000391", "pack": "baseline"})
    assert erased.status_code == 200, erased.text
    older = [o for s in erased.json()["unlearning"] for o in s.get("older_versions_replaced", [])]
    assert [o["version"] for o in older] == [first]
    assert files_naming(server.home, "u000391") == []  # nothing under RECGOV_HOME lists them
    assert not Path(doc["artifact"]).exists()
    with server.client("operator") as client:
        replaced = _ask(client, "u000392", first)
    assert replaced.status_code == 409 and replaced.json()["type"].endswith("/model-replaced"), replaced.text
