"""Which pack a retrain after erasure runs under, through the CLI on SQLite and PostgreSQL.

A retrain never learns from anyone the replaced model's own consent rules left out: a model trained
under a pack's consent rules is retrained under that pack, whatever pack recorded the erasure (that
pack set the deadline; erased subjects are left out under every pack); a model trained without
consent rules (no pack, the baseline) may be retrained under any pack, and is named to run under the
baseline, its own rules. A model trained under the baseline pack (no consent purposes) erased under the EU
pack used to be stamped for the EU pack: `retrain run --pack eu-gdpr-dsa` retrained it under the EU
consent rules (nothing to learn from without consent), `--pack baseline` refused with "purpose
'personalization' is not listed", and the request could never complete.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from cli_helpers import recent_events_csv, dump, invoke, ok


VICTIM = "dsr-binding-victim-Q7m2"
MAP = "user_id=user_id,item_id=item_id,timestamp=timestamp,event_type=event_type,value=value"


@pytest.fixture(scope="module")
def events_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return recent_events_csv(tmp_path_factory.mktemp("binding") / "events.csv", VICTIM, n_users=60, n_items=40, n_interactions=1800, seed=5)


def run(events_csv: Path, db_url: str, pack: str):  # noqa: ANN201
    return invoke("retrain", "run", events_csv, "--map", MAP, "--pack", pack, "--no-carbon", "--json",
                  "--database-url", db_url)  # fmt: skip


def test_a_baseline_model_erased_under_the_eu_pack_is_retrained_under_the_baseline_pack(db_url: str, events_csv: Path) -> None:
    trained = ok("train", events_csv, "--map", MAP, "--pack", "baseline", "--no-tune", "--no-carbon",
                 "--factors", "6", "--iterations", "3", "--database-url", db_url)  # fmt: skip
    version = trained["model_version"]
    erased = ok("subject", "erase", "--approximate", VICTIM, "--pack", "eu-gdpr-dsa", "--no-residual", "--database-url", db_url)
    request = erased["retrain"]["request"]
    holding = request["models"]
    assert version in holding and request["deadline_basis"].startswith("30 days: consent.requests.retrain_days of pack eu-gdpr-dsa")
    assert request["retrain_under"] == dict.fromkeys(holding, "baseline")
    assert any("recgov retrain run DATA --pack baseline" in item for item in erased["not_done"])
    (due,) = ok("retrain", "due", "--database-url", db_url)["pending"]
    assert due["retrain_under"] == dict.fromkeys(holding, "baseline")
    table = invoke("retrain", "due", "--database-url", db_url)
    assert table.exit_code == 0 and "--pack baseline" in table.stdout

    # The EU pack's consent rules leave nothing of this data (nobody consented): one line, exit 2, nothing written,
    # and it names the run that retrains the model by its own rules.
    before = sorted(dump(db_url).splitlines())  # row order is the engine's (PostgreSQL moves rows a transaction touched)
    eu = run(events_csv, db_url, "eu-gdpr-dsa")
    assert eu.exit_code == 2 and len(eu.stderr.strip().splitlines()) == 1
    assert "recgov retrain run DATA --pack baseline" in eu.stderr
    assert sorted(dump(db_url).splitlines()) == before
    assert len(ok("retrain", "due", "--database-url", db_url)["pending"]) == 1

    # Under the baseline pack (the model's own rules) the retrain runs and completes the request.
    done = run(events_csv, db_url, "baseline")
    assert done.exit_code == 0, done.output
    doc = json.loads(done.stdout)
    (new,) = doc["retrained"]
    assert sorted(new["replaces"]) == sorted(holding) and new["recipe_of"] == version
    assert new["events"]["excluded"]["erased"] > 0
    assert [r["status"] for r in doc["requests"]] == ["completed"]
    assert ok("retrain", "due", "--database-url", db_url)["pending"] == []
    assert VICTIM not in dump(db_url)


def test_erase_with_retrain_under_another_pack_reports_the_request_open(db_url: str, events_csv: Path) -> None:
    """`subject erase --retrain` under the EU pack of a model the CCPA pack's rules trained: the request is not
    reported completed while the model waits for a run under its own pack."""
    ok("train", events_csv, "--map", MAP, "--pack", "california-ccpa", "--no-tune", "--no-carbon",
       "--factors", "6", "--iterations", "3", "--database-url", db_url)  # fmt: skip
    others = [u for u in pd.read_csv(events_csv)["user_id"].astype(str).unique() if u != VICTIM][:3]
    for purpose in ("personalization",):  # the EU pack's retrain-data check needs someone to learn from
        for subject in others:
            ok("consent", "set", subject, "--purpose", purpose, "--status", "granted", "--source", "api",
               "--pack", "eu-gdpr-dsa", "--database-url", db_url)  # fmt: skip
    words = waits(db_url, events_csv, json_output=False)  # exit 1, as retrain run: the request it opened still waits
    (due,) = ok("retrain", "due", "--database-url", db_url)["pending"]
    assert f"still open: retrain request(s) #{due['id']}" in words and "recgov retrain run DATA --pack california-ccpa" in words
    assert VICTIM not in dump(db_url)  # the erasure itself is done


def waits(db_url: str, events_csv: Path, *, json_output: bool = True):  # noqa: ANN201
    """``subject erase --retrain`` whose retrain request still waits: exit 1 (as ``retrain run``); its JSON document,
    or its words (on one line each)."""
    args = ("subject", "erase", "--approximate", VICTIM, "--pack", "eu-gdpr-dsa", "--no-residual", "--retrain", events_csv, "--map", MAP,
            "--no-carbon", "--database-url", db_url, *(["--json"] if json_output else []))  # fmt: skip
    erased = invoke(*args)
    assert erased.exit_code == 1, erased.output
    return json.loads(erased.stdout) if json_output else " ".join(erased.stdout.split())


def test_erase_with_retrain_checks_the_data_under_the_pack_the_retrain_runs_under(db_url: str, events_csv: Path) -> None:
    """`subject erase --retrain` checked the retrain data under the erasure's pack, while the retrain of a model
    another pack's consent rules trained runs under that pack (as `retrain run` does): an erasure under the EU pack
    (nobody consented, nothing to learn from under its rules) of a model the CCPA pack trained was refused, although
    its retrain would never run under the EU pack. Now it is carried out, and the request waits for the CCPA run;
    `retrain run` exits 1 while a request still waits, 0 once it is completed."""
    ok("train", events_csv, "--map", MAP, "--pack", "california-ccpa", "--no-tune", "--no-carbon",
       "--factors", "6", "--iterations", "3", "--database-url", db_url)  # fmt: skip
    erased = waits(db_url, events_csv)
    request = erased["retrain"]["request"]
    assert request["status"] == "in_progress" and erased["retrain"]["run"]["retrained"] == []
    assert any("recgov retrain run DATA --pack california-ccpa" in item for item in erased["not_done"])

    waiting = run(events_csv, db_url, "baseline")  # not the model's pack: nothing runs, the request still waits
    assert waiting.exit_code == 1, waiting.output
    assert [r.get("waiting_for") for r in json.loads(waiting.stdout)["requests"]] != [None]
    table = invoke("retrain", "run", events_csv, "--map", MAP, "--pack", "baseline", "--no-carbon", "--database-url", db_url)
    assert table.exit_code == 1 and "still open" in table.stdout

    done = run(events_csv, db_url, "california-ccpa")
    assert done.exit_code == 0, done.output
    assert [r["status"] for r in json.loads(done.stdout)["requests"]] == ["completed"]
    assert ok("retrain", "due", "--database-url", db_url)["pending"] == []
    assert run(events_csv, db_url, "california-ccpa").exit_code == 0  # nothing due: nothing waits


def test_erase_with_retrain_still_checks_the_data_a_retrain_under_its_pack_learns_from(db_url: str, events_csv: Path) -> None:
    """The check still holds where the retrain runs under the erasure's pack: a model the EU pack trained, erased
    under it, with retrain data nobody consented in, is refused before anything is stored."""
    others = [VICTIM, *[u for u in pd.read_csv(events_csv)["user_id"].astype(str).unique() if u != VICTIM][:5]]
    for subject in others:  # the model learns from them, the victim among them
        ok("consent", "set", subject, "--purpose", "personalization", "--status", "granted", "--source", "api",
           "--pack", "eu-gdpr-dsa", "--database-url", db_url)  # fmt: skip
    ok("train", events_csv, "--map", MAP, "--pack", "eu-gdpr-dsa", "--no-tune", "--no-carbon",
       "--factors", "6", "--iterations", "3", "--database-url", db_url)  # fmt: skip
    for subject in others:  # every consent withdrawn: nothing left to learn from under the EU pack
        ok("consent", "set", subject, "--purpose", "personalization", "--status", "withdrawn", "--source", "api",
           "--pack", "eu-gdpr-dsa", "--database-url", db_url)  # fmt: skip
    before = sorted(dump(db_url).splitlines())
    refused = invoke("subject", "erase", "--approximate", VICTIM, "--pack", "eu-gdpr-dsa", "--no-residual", "--retrain", events_csv,
                     "--map", MAP, "--no-carbon", "--database-url", db_url)  # fmt: skip
    assert refused.exit_code == 2 and "leaves no event to train on" in " ".join(refused.stderr.split()), refused.output
    assert sorted(dump(db_url).splitlines()) == before
