"""Red team, through the CLI on SQLite and PostgreSQL: a harm flag or report names an item of the catalogue.

Hole pinned: ``recgov harm flag I00047`` (or ``47``) when the model serves ``i00047`` was stored, and the answer
said the flag kept the item out of lists; lists are filtered by the exact id, so the item stayed in every list.
Now an id no catalogue holds but spelt like one that does (case, leading zeros, Unicode compatibility forms, a
bare number) is refused, naming the catalogue's spelling, and nothing is stored; an id no catalogue holds at
all is kept (an item not served yet), and the answer says that no list holds it now.
"""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from audits import open_store
from audits.availability import AvailabilityChange, apply_changes
from audits.catalogue import CatalogueCheck, _Ids, check_item, clear_catalogue_cache, spelling_key
from audits.models import ItemFlag, ItemReport, ModelVersion, TrailEvent
from governance.cli import app
from recommender.family import model_item_ids

runner = CliRunner()
DATA = "synthetic:n_users=120,n_items=60,n_interactions=3000,seed=5"


def _cli(db_url: str, *args: str):
    return runner.invoke(app, [*args, "--database-url", db_url])


@pytest.fixture
def trained(db_url: str) -> tuple[str, str]:
    """A store with one trained model: (its version, one item id it serves)."""
    clear_catalogue_cache()
    result = _cli(db_url, "train", DATA, "--no-tune", "--no-carbon", "--factors", "4", "--iterations", "2", "--json")
    assert result.exit_code == 0, result.output
    version = json.loads(result.stdout)["model_version"]
    store = open_store(db_url)
    try:
        with store.session() as session:
            location = session.get(ModelVersion, version).artifact_location
    finally:
        store.close()
    ids = set(model_item_ids(location).tolist())
    assert "i00047" in ids  # the synthetic catalogue's spelling
    return version, "i00047"


def _stored(db_url: str) -> tuple[int, int, int]:
    """(flags, reports, trail events) in the store."""
    store = open_store(db_url)
    try:
        with store.session() as session:
            return (
                session.scalar(select(func.count()).select_from(ItemFlag)),
                session.scalar(select(func.count()).select_from(ItemReport)),
                session.scalar(select(func.count()).select_from(TrailEvent)),
            )
    finally:
        store.close()


@pytest.mark.parametrize("spelling", ["I00047", "47", "0047", "i47", "ｉ００４７"])
def test_a_near_spelling_of_a_served_id_is_refused_and_nothing_is_stored(db_url: str, trained, spelling: str) -> None:
    """Hole: the flag was stored under the wrong spelling and said it kept the item out; the item stayed in lists."""
    before = _stored(db_url)
    flag = _cli(db_url, "harm", "flag", spelling, "--category", "self-harm", "--confidence", "0.99", "--pack", "eu-gdpr-dsa")
    report = _cli(db_url, "harm", "report", spelling, "--reason", "disturbing")
    for result in (flag, report):
        assert result.exit_code == 2, result.output
        assert "did you mean i00047?" in result.output and "nothing was stored" in result.output
        assert len(result.output.strip().splitlines()) <= 3  # one line, wrapped at most by the terminal width
    assert _stored(db_url) == before


def test_the_exact_id_is_flagged_kept_out_and_said_to_be_in_the_catalogue(db_url: str, trained) -> None:
    version, item = trained
    flag = _cli(db_url, "harm", "flag", item, "--category", "self-harm", "--confidence", "0.99", "--pack", "eu-gdpr-dsa", "--json")
    assert flag.exit_code == 0, flag.output
    answer = json.loads(flag.stdout)
    assert answer["in_catalogue"] is True and answer["catalogue"] == f"in model {version} (recorded, not deployed)"
    assert answer["effect"].startswith("keeps the item out of lists under pack eu-gdpr-dsa")
    assert _cli(db_url, "harm", "evaluate", "--pack", "eu-gdpr-dsa").exit_code == 0
    served = _cli(db_url, "recommend", "u000001", "--model", version, "--k", "60", "--pack", "eu-gdpr-dsa", "--data", DATA, "--json")
    assert served.exit_code == 0, served.output
    assert item not in {i["item_id"] for i in json.loads(served.stdout)["items"]}


def test_an_id_no_catalogue_holds_is_kept_and_said_to_be_in_no_list(db_url: str, trained) -> None:
    """An item no model serves yet may be flagged ahead of time, but the answer must not claim it removed anything."""
    version, _ = trained
    flag = _cli(db_url, "harm", "flag", "new-item-9", "--category", "self-harm", "--confidence", "0.99", "--pack", "eu-gdpr-dsa", "--json")
    assert flag.exit_code == 0, flag.output
    answer = json.loads(flag.stdout)
    assert answer["in_catalogue"] is False and answer["item_id"] == "new-item-9"
    assert answer["catalogue"] == f"in no catalogue recgov knows (checked: model {version} (recorded, not deployed))"
    assert answer["effect"].startswith("no list holds the item now") and "keeps the item out of lists under" not in answer["effect"]
    counted = _cli(db_url, "harm", "flag", "new-item-9", "--category", "spam", "--confidence", "0.5")
    assert counted.exit_code == 0 and "no list holds the item now" in counted.output
    report = _cli(db_url, "harm", "report", "new-item-9", "--reason", "spam", "--json")
    assert report.exit_code == 0, report.output
    assert json.loads(report.stdout)["in_catalogue"] is False
    plain = _cli(db_url, "harm", "report", "new-item-9", "--reason", "spam")
    assert "no list holds the item now" in plain.output
    assert _stored(db_url)[:2] == (2, 2)


def test_with_no_catalogue_at_all_a_flag_is_kept_and_says_so(db_url: str) -> None:
    clear_catalogue_cache()
    flag = _cli(db_url, "harm", "flag", "I00047", "--category", "spam", "--confidence", "0.5", "--json")
    assert flag.exit_code == 0, flag.output
    answer = json.loads(flag.stdout)
    assert answer["in_catalogue"] is False and answer["catalogue"].startswith("in no catalogue: recgov knows none yet")
    assert answer["effect"].startswith("no list holds the item now: it is in no catalogue: recgov knows none yet")


def test_the_availability_table_is_a_catalogue_too(db_url: str, trained) -> None:
    store = open_store(db_url)
    try:
        with store.session() as session:
            apply_changes(session, [AvailabilityChange("sku-0099", "out_of_stock")])
    finally:
        store.close()
    refused = _cli(db_url, "harm", "flag", "SKU-99", "--category", "spam", "--confidence", "0.5")
    assert refused.exit_code == 2 and "did you mean sku-0099?" in refused.output
    accepted = _cli(db_url, "harm", "flag", "sku-0099", "--category", "spam", "--confidence", "0.5", "--json")
    assert accepted.exit_code == 0, accepted.output
    assert json.loads(accepted.stdout)["catalogue"] == "in the item availability table"


def test_a_model_file_is_read_once_per_version(db_url: str, trained, monkeypatch: pytest.MonkeyPatch) -> None:
    """The catalogue is cached by version and artifact hash: a second check reads no file."""
    import recommender.family as family

    reads = []
    real = family.model_item_ids
    monkeypatch.setattr(family, "model_item_ids", lambda path, **kw: reads.append(path) or real(path, **kw))
    clear_catalogue_cache()
    store = open_store(db_url)
    try:
        for _ in range(3):
            with store.session() as session:
                assert check_item(session, "i00047").in_catalogue
                assert not check_item(session, "other-item").in_catalogue
    finally:
        store.close()
    assert len(reads) == 1


def test_near_spellings() -> None:
    assert spelling_key("I00573") == spelling_key("i573") == spelling_key("ｉ００５７３") == "i573"
    ids = _Ids(["i00573", "i00574", "573x", "u00573", "900", "a-b-7"])
    assert ids.near("I00573") == ["i00573"]
    assert ids.near("573") == ["i00573", "u00573"]  # a bare number names a lettered id either way
    assert ids.near("i0900") == ["900"]
    assert ids.near("i575") == [] and ids.near("a-b-07") == ["a-b-7"] and ids.near("i00573") == []
    assert ids.near("A-B-7") == ["a-b-7"] and ids.near("b-7") == [] and ids.near("0900") == ["900"] and ids.near("x1573") == []
    assert _Ids(["ｉ００５７３", "I-9"]).near("i573") == ["ｉ００５７３"] and _Ids([]).near("x") == []
    assert CatalogueCheck("x", False, None).describe().startswith("in no catalogue: recgov knows none yet")


def test_deployed_models_are_named_by_stage_and_a_retired_model_is_no_catalogue(db_url: str, trained) -> None:
    """What may be served decides: a shadow model's items are looked in (and named so), a retired model's are not."""
    version, item = trained
    assert _cli(db_url, "deploy", "promote", version, "--to", "shadow", "--json").exit_code == 0
    shadow = _cli(db_url, "harm", "report", item, "--reason", "spam", "--json")
    assert shadow.exit_code == 0, shadow.output
    assert json.loads(shadow.stdout)["catalogue"] == f"in model {version} (shadow)"
    retired = _cli(db_url, "deploy", "retire", version, "--json")
    assert retired.exit_code == 0, retired.output
    after = _cli(db_url, "harm", "report", item.upper(), "--reason", "spam", "--json")
    assert after.exit_code == 0, after.output
    assert json.loads(after.stdout)["in_catalogue"] is False  # no list can hold it: nothing serves the retired model
