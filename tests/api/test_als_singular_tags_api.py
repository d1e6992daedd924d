"""``POST /v1/recommendations`` with an ALS version whose per-user system is singular, over real HTTP, on both stores.

Regression: ALS trained without regularization on fewer items than factors made every personalized list's tags
raise ``LinAlgError`` inside the request: a 500 instead of a list. The tags now decompose the minimum-norm
least-squares factor (:func:`recommender.als_explain.explain_als_list`).
"""

from __future__ import annotations

import json

from typer.testing import CliRunner

from governance.cli import app as cli

SMALL = "synthetic:n_users=60,n_items=6,n_interactions=200,seed=4"


def test_an_unregularized_als_on_a_small_catalogue_serves_its_list_with_tags(server) -> None:
    trained = CliRunner().invoke(
        cli,
        ["train", SMALL, "--no-tune", "--no-carbon", "--factors", "16", "--iterations", "4", "--regularization", "0", "--database-url", server.db_url, "--json"],
    )
    assert trained.exit_code == 0, trained.output
    version = json.loads(trained.stdout)["model_version"]
    subject = "u000012"
    with server.client("operator") as client:
        body = {"subject": subject, "purpose": "personalization", "status": "granted", "basis": "consent", "source": "api"}
        assert client.post("/v1/consent", json=body).status_code == 201
        answer = client.post("/v1/recommendations", json={"subject": subject, "k": 3, "model_version": version, "pack": "eu-gdpr-dsa"})
    assert answer.status_code == 200, answer.text
    served = answer.json()
    assert served["mode"] == "personalized" and served["items"]
    assert all(item["tags"] for item in served["items"])
