"""A forbidden attribute cannot reach a model through the columns a fit reads.

The family vocabulary (``interactions``, ``item_text``, ...) says what kind of input a family reads;
the columns behind it are chosen by a column mapping (``--map value=religion``, ``--items-map
category=religion``), by a family's parameters (``text_columns=["religion"]``) or by a nested Parquet
field. Every governed fit checks those columns against the pack's forbidden and audit-only attributes,
in any spelling, before it reads a row.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from audits import open_store
from audits.consent import record_consent
from audits.models import ModelVersion, TrainingRun
from governance.cli import app
from governance.family_inputs import check_family_inputs, columns_read
from governance.policy import load_pack
from recommender.attribute_names import names_attribute
from recommender.errors import ConfigError, DataError
from recommender.fair_training import check_attribute_allowed, parse_fair_reweighting
from recommender.family import get_family
from recommender.item_table import ItemMapping, attach_items, load_item_table
from recommender.loaders import ColumnMapping, load_event_log

runner = CliRunner()
POLICIES = Path(__file__).resolve().parents[2] / "policies"
EU = load_pack(POLICIES / "eu-gdpr-dsa.yaml")
N_USERS, N_ITEMS = 30, 20


def _content_pack():
    """The EU pack with the item fields allowed for personalization (religion, health, ... still forbidden)."""
    pack = EU.pack.model_copy(deep=True)
    pack.minimization.purposes["personalization"].allowed_inputs.extend(["item_text", "item_category", "item_price", "item_release"])
    return pack


def _log(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    n = 600
    users = rng.integers(0, N_USERS, n)
    log = pd.DataFrame({
        "uid": [f"u{u}" for u in users], "sku": [f"i{i}" for i in rng.integers(0, N_ITEMS, n)],
        "ts": 1_700_000_000 + rng.integers(0, 10**6, n), "Religion": (users % 3 + 1).astype(float),
        "religion_code": (users % 3 + 4).astype(float),
    })  # fmt: skip
    path = tmp_path / "log.csv"
    log.to_csv(path, index=False)
    return path


def _items(tmp_path: Path) -> Path:
    faiths = ["a", "b", "c"]
    table = pd.DataFrame({
        "item_id": [f"i{i}" for i in range(N_ITEMS)], "text": [f"word{i % 7} thing{i % 5}" for i in range(N_ITEMS)],
        "owner_religion": [faiths[i % 3] for i in range(N_ITEMS)], "genres": ["x|y"] * N_ITEMS,
    })  # fmt: skip
    path = tmp_path / "items.csv"
    table.to_csv(path, index=False)
    return path


@pytest.mark.parametrize(
    ("column", "attribute", "names"),
    [
        ("religion", "religion", True),
        ("Religion", "religion", True),
        (" religion ", "religion", True),
        ("RELIGION", "religion", True),
        ("userReligion", "religion", True),
        ("religion_code", "religion", True),
        ("profile.religion", "religion", True),
        ("sexual-orientation", "sexual_orientation", True),
        ("SexualOrientation", "sexual_orientation", True),
        ("sexualorientation", "sexual_orientation", True),
        ("\uff52\uff45\uff4c\uff49\uff47\uff49\uff4f\uff4e", "religion", True),  # full-width letters
        ("user_reli\u00adgion", "religion", True),  # a soft hyphen inside the word
        ("reli\u200bgion_code", "religion", True),  # a zero-width space inside the word
        ("user\u200breligion", "religion", True),  # a zero-width space between the words
        ("r\u0435ligion", "religion", True),  # Cyrillic e
        ("R\u0415LIGION", "religion", True),  # Cyrillic capital Ie
        ("userR\u0435ligion", "religion", True),
        ("\u0261ender_F", "gender", True),  # IPA script g, one-hot
        ("religio\u0301n", "religion", True),  # a combining accent
        ("religi\u00f3n", "religion", True),  # a precomposed accent
        ("healthcare", "health", False),
        ("page_bands", "age_band", False),
        ("rating", "gender", False),
    ],
)
def test_a_column_names_an_attribute_in_any_spelling(column: str, attribute: str, names: bool) -> None:
    assert names_attribute(column, attribute) is names


@pytest.mark.parametrize("source", ["Religion", "religion_code"])
def test_a_mapped_event_column_that_names_a_forbidden_attribute_is_refused(tmp_path: Path, source: str) -> None:
    data = load_event_log(_log(tmp_path), ColumnMapping(user_id="uid", item_id="sku", timestamp="ts", value=source))
    assert ("event field value", source) in columns_read(get_family("als"), data)
    with pytest.raises(ConfigError, match=f"event field value reads column '{source}' \\(religion\\)"):
        check_family_inputs(get_family("als"), EU, dataset=data)
    clean = load_event_log(_log(tmp_path), ColumnMapping(user_id="uid", item_id="sku", timestamp="ts"))
    check_family_inputs(get_family("als"), EU, dataset=clean)


def test_a_session_id_mapped_from_a_forbidden_column_is_refused(tmp_path: Path) -> None:
    data = load_event_log(_log(tmp_path), ColumnMapping(user_id="uid", item_id="sku", timestamp="ts", session_id="Religion"))
    with pytest.raises(ConfigError, match="event field session_id reads column 'Religion'"):
        check_family_inputs(get_family("session"), EU, dataset=data)


def test_a_content_family_may_not_name_a_forbidden_item_column(tmp_path: Path) -> None:
    data = load_event_log(_log(tmp_path), ColumnMapping(user_id="uid", item_id="sku", timestamp="ts"))
    data = attach_items(data, load_item_table(_items(tmp_path)))
    pack = _content_pack()
    for family in ("content_tfidf", "content_embed"):
        check_family_inputs(get_family(family), pack, dataset=data, params={"text_columns": ["text"]})
        with pytest.raises(ConfigError, match="parameter text_columns reads column 'owner_religion' \\(religion\\)"):
            check_family_inputs(get_family(family), pack, dataset=data, params={"text_columns": ["text", "owner_religion"]})
    with pytest.raises(ConfigError, match="parameter category_column reads column 'owner_religion'"):
        check_family_inputs(get_family("content_tfidf"), pack, dataset=data, params={"category_column": "owner_religion"})
    # the hybrid passes its content parameters on, nested
    with pytest.raises(ConfigError, match="parameter content_params.text_columns reads column 'owner_religion'"):
        check_family_inputs(get_family("hybrid"), pack, dataset=data, params={"content_params": {"text_columns": ["owner_religion"]}})


def test_an_item_column_renamed_from_a_forbidden_one_is_refused_under_its_source_name(tmp_path: Path) -> None:
    data = load_event_log(_log(tmp_path), ColumnMapping(user_id="uid", item_id="sku", timestamp="ts"))
    data = attach_items(data, load_item_table(_items(tmp_path), ItemMapping(category="owner_religion")))
    assert data.columns_from["items.categories"] == "owner_religion"
    with pytest.raises(ConfigError, match="item categories reads column 'owner_religion'"):
        check_family_inputs(get_family("two_tower"), _content_pack(), dataset=data)
    with pytest.raises(ConfigError, match="item-table column 'categories'\\)"):
        check_family_inputs(get_family("content_tfidf"), _content_pack(), dataset=data, params={"category_column": "categories"})
    fine = attach_items(data, load_item_table(_items(tmp_path), ItemMapping(category="genres")))
    check_family_inputs(get_family("two_tower"), _content_pack(), dataset=fine)


def test_a_nested_parquet_field_is_a_column_of_its_own_name(tmp_path: Path) -> None:
    path = tmp_path / "items.parquet"
    pq.write_table(pa.table({
        "item_id": [f"i{i}" for i in range(N_ITEMS)], "text": ["some words"] * N_ITEMS,
        "profile": [{"religion": "a", "colour": "red"}] * N_ITEMS,
    }), path)  # fmt: skip
    table = load_item_table(path)
    assert {"profile.religion", "profile.colour"} <= set(table.columns) and "profile" not in table.columns
    data = attach_items(load_event_log(_log(tmp_path), ColumnMapping(user_id="uid", item_id="sku", timestamp="ts")), table)
    with pytest.raises(ConfigError, match="reads column 'profile.religion'"):
        check_family_inputs(get_family("content_tfidf"), _content_pack(), dataset=data, params={"text_columns": ["profile.religion"]})


def test_no_reweighting_by_a_forbidden_attribute_on_either_side() -> None:
    for given in ("provider:religion", "provider:owner_religion", "consumer:Religion"):
        with pytest.raises(ConfigError, match="forbidden_attributes"):
            check_attribute_allowed(parse_fair_reweighting(given), EU.pack)
    check_attribute_allowed(parse_fair_reweighting("provider:provider_group"), EU.pack)
    check_attribute_allowed(parse_fair_reweighting("consumer:gender"), EU.pack)


def _grant(db_url: str) -> None:
    store = open_store(db_url)
    try:
        with store.session() as session:
            for u in range(N_USERS):
                record_consent(session, subject_id=f"u{u}", purpose="personalization", status="granted", lawful_basis="consent", source="api")
    finally:
        store.close()


def _models(db_url: str) -> tuple[int, int]:
    store = open_store(db_url)
    try:
        with store.session() as session:
            return len(session.scalars(select(TrainingRun.id)).all()), len(session.scalars(select(ModelVersion.version_id)).all())
    finally:
        store.close()


def test_train_refuses_a_forbidden_column_before_any_fit(db_url: str, tmp_path: Path) -> None:
    _grant(db_url)
    log, items = _log(tmp_path), _items(tmp_path)
    content = tmp_path / "eu-content.yaml"
    content.write_text((POLICIES / "eu-gdpr-dsa.yaml").read_text().replace(
        "allowed_inputs: [user_id, item_id, event_type, value, timestamp, session_id]",
        "allowed_inputs: [user_id, item_id, event_type, value, timestamp, session_id, item_text, item_category]"))  # fmt: skip
    base = ["train", str(log), "--no-carbon", "--no-tune", "--database-url", db_url, "--as-of", "2023-12-01", "--json"]
    cases = [
        ["--map", "user_id=uid,item_id=sku,timestamp=ts,value=Religion", "--pack", "eu-gdpr-dsa"],
        ["--map", "user_id=uid,item_id=sku,timestamp=ts,value=Religion", "--pack", "eu-gdpr-dsa", "--family", "ease"],
        ["--map", "user_id=uid,item_id=sku,timestamp=ts", "--items", str(items), "--pack", str(content),
         "--family", "content_tfidf", "--param", 'text_columns=["owner_religion"]'],
        ["--map", "user_id=uid,item_id=sku,timestamp=ts", "--items", str(items), "--items-map", "category=owner_religion",
         "--pack", str(content), "--family", "two_tower"],
    ]  # fmt: skip
    for extra in cases:
        result = runner.invoke(app, [*base, *extra])
        assert result.exit_code == 2, (extra, result.output)
        assert "would read a forbidden or audit-only attribute" in result.stderr and "religion" in result.stderr
    assert _models(db_url) == (0, 0)
    ok = runner.invoke(app, [*base, "--map", "user_id=uid,item_id=sku,timestamp=ts", "--pack", "eu-gdpr-dsa"])
    assert ok.exit_code == 0, ok.output
    assert _models(db_url) == (1, 1)


def test_a_pack_without_consent_rules_still_holds_the_fit_to_its_forbidden_attributes(db_url: str, tmp_path: Path) -> None:
    pack = tmp_path / "minimal.yaml"
    text = (POLICIES / "baseline.yaml").read_text()
    pack.write_text(text.replace("minimization:\n", "minimization:\n  forbidden_attributes: [religion]\n", 1))
    assert load_pack(pack).pack.minimization.forbidden_attributes == ["religion"] and not load_pack(pack).pack.consent.purposes
    args = ["train", str(_log(tmp_path)), "--no-carbon", "--no-tune", "--database-url", db_url, "--json", "--pack", str(pack), "--map"]
    refused = runner.invoke(app, [*args, "user_id=uid,item_id=sku,timestamp=ts,value=religion_code"])
    assert refused.exit_code == 2 and "event field value reads column 'religion_code'" in refused.stderr, refused.output
    assert _models(db_url) == (0, 0)


def test_the_spark_engine_refuses_before_a_session_starts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from governance.spark import batch, session

    data = load_event_log(_log(tmp_path), ColumnMapping(user_id="uid", item_id="sku", timestamp="ts", value="Religion"))
    monkeypatch.setattr(session, "spark_session", lambda *a, **k: pytest.fail("a Spark session was started"))
    with pytest.raises(ConfigError, match="event field value reads column 'Religion'"):
        batch.train_spark_and_record(data, EU, store=None, models_dir=tmp_path / "models")


def test_a_dataset_keeps_the_item_sources_of_the_last_table_attached(tmp_path: Path) -> None:
    data = load_event_log(_log(tmp_path), ColumnMapping(user_id="uid", item_id="sku", timestamp="ts"))
    first = attach_items(data, load_item_table(_items(tmp_path), ItemMapping(category="owner_religion")))
    again = attach_items(first, load_item_table(_items(tmp_path), ItemMapping(category="genres")))
    assert again.columns_from["items.categories"] == "genres"
    assert dataclasses.replace(again).columns_from == again.columns_from
    assert json.dumps(again.columns_from)  # plain strings, recorded as they are


LOOKALIKE = "owner_r\u0435li\u00adgion"  # a Cyrillic e and a soft hyphen: prints as owner_religion


def test_train_refuses_a_forbidden_column_spelt_with_lookalike_or_invisible_characters(db_url: str, tmp_path: Path) -> None:
    _grant(db_url)
    log = pd.read_csv(_log(tmp_path)).rename(columns={"Religion": "r\u0435ligion"})
    log.to_csv(tmp_path / "log.csv", index=False)
    items = pd.read_csv(_items(tmp_path)).rename(columns={"owner_religion": LOOKALIKE})
    items.to_csv(tmp_path / "items.csv", index=False)
    content = tmp_path / "eu-content.yaml"
    content.write_text((POLICIES / "eu-gdpr-dsa.yaml").read_text().replace(
        "allowed_inputs: [user_id, item_id, event_type, value, timestamp, session_id]",
        "allowed_inputs: [user_id, item_id, event_type, value, timestamp, session_id, item_text, item_category]"))  # fmt: skip
    base = ["train", str(tmp_path / "log.csv"), "--no-carbon", "--no-tune", "--database-url", db_url, "--as-of", "2023-12-01", "--json"]
    mapped = "user_id=uid,item_id=sku,timestamp=ts"
    cases = [
        ["--map", f"{mapped},value=r\u0435ligion", "--pack", "eu-gdpr-dsa"],
        ["--map", mapped, "--items", str(tmp_path / "items.csv"), "--items-map", f"category={LOOKALIKE}", "--pack", str(content), "--family", "two_tower"],
        ["--map", mapped, "--items", str(tmp_path / "items.csv"), "--pack", str(content), "--family", "content_tfidf",
         "--param", f'text_columns=["{LOOKALIKE}"]'],
    ]  # fmt: skip
    for extra in cases:
        result = runner.invoke(app, [*base, *extra])
        assert result.exit_code == 2, (extra, result.output)
        assert "would read a forbidden or audit-only attribute" in result.stderr and "(religion)" in result.stderr
    assert _models(db_url) == (0, 0)
    data = attach_items(load_event_log(tmp_path / "log.csv", ColumnMapping(user_id="uid", item_id="sku", timestamp="ts")),
                        load_item_table(tmp_path / "items.csv"))  # fmt: skip
    with pytest.raises(ConfigError, match="parameter content_params.text_columns reads column"):
        check_family_inputs(get_family("hybrid"), _content_pack(), dataset=data, params={"content_params": {"text_columns": [LOOKALIKE]}})


def _count(db_url: str, model: type) -> int:
    store = open_store(db_url)
    try:
        with store.session() as session:
            return len(session.scalars(select(model)).all())
    finally:
        store.close()


@pytest.mark.parametrize("column", ["owner_religion", LOOKALIKE])
def test_item_categories_from_a_forbidden_column_are_refused_for_every_family_and_at_serving(
    db_url: str, tmp_path: Path, column: str
) -> None:
    """ALS reads no item categories, but the calibration re-ranker and a request's category do: a category column
    mapped from a forbidden attribute is refused at the mapping, whatever the family, and nothing is recorded."""
    from audits.models import ConsentRecordRow, DecisionRecord
    from governance.serving import ServingEngine
    from recommender.als import ALSRecommender
    from recommender.feedback import to_implicit

    _grant(db_url)
    items = pd.read_csv(_items(tmp_path)).rename(columns={"owner_religion": column})
    items.to_csv(tmp_path / "items.csv", index=False)
    log = str(_log(tmp_path))
    mapped = ["--map", "user_id=uid,item_id=sku,timestamp=ts"]
    with_items = [*mapped, "--items", str(tmp_path / "items.csv"), "--items-map", f"category={column}"]
    base = ["--database-url", db_url, "--as-of", "2023-12-01", "--json", "--pack", "eu-gdpr-dsa"]
    for command in (["train", log, "--no-carbon", "--no-tune"], ["batch", log, "--engine", "inprocess", "--out", str(tmp_path / "out")]):
        refused = runner.invoke(app, [*command, *base, *with_items])
        assert refused.exit_code == 2, (command, refused.output)
        assert f"item categories reads column {column!r} (religion)" in refused.stderr, refused.stderr
        assert "minimization.forbidden_attributes" in refused.stderr
        assert not (tmp_path / "out").exists()
    assert _models(db_url) == (0, 0)
    trained = runner.invoke(app, ["train", log, "--no-carbon", "--no-tune", *base, *mapped])
    assert trained.exit_code == 0, trained.output
    version = json.loads(trained.stdout)["model_version"]
    consents = _count(db_url, ConsentRecordRow)
    serve = ["recommend", "u1", "--model", version, "--pack", "eu-gdpr-dsa", "--database-url", db_url, "--json", "--gpc", "--data", log]
    refused = runner.invoke(app, [*serve, *with_items])
    assert refused.exit_code == 2, refused.output
    assert "would put a forbidden or audit-only attribute into the lists" in refused.stderr
    assert f"item categories reads column {column!r} (religion)" in refused.stderr
    assert _count(db_url, DecisionRecord) == 0 and _count(db_url, ConsentRecordRow) == consents  # the GPC opt-out too
    fine = runner.invoke(app, [*serve, *mapped, "--items", str(tmp_path / "items.csv"), "--items-map", "category=genres"])
    assert fine.exit_code == 0, fine.output
    # the engine itself (the batch lists' and the service's) refuses such items
    table = load_item_table(tmp_path / "items.csv", ItemMapping(category=column))
    data = attach_items(load_event_log(_log(tmp_path), ColumnMapping(user_id="uid", item_id="sku", timestamp="ts")), table)
    model = ALSRecommender(factors=4, iterations=2).fit(to_implicit(data.events))
    with pytest.raises(ConfigError, match="item categories reads column"):
        ServingEngine(EU, model, data.items)
    ServingEngine(EU, model, attach_items(data, load_item_table(tmp_path / "items.csv", ItemMapping(category="genres"))).items)


def _renamed_by_pandas_metadata(path: Path, table: pa.Table, renames: dict[str, str], index: list[str] = ()) -> Path:
    """``table`` written with pandas metadata naming its fields otherwise (``religion`` read as ``genres``)."""
    columns = [{"name": renames.get(f, f), "field_name": f, "pandas_type": "unicode", "numpy_type": "object", "metadata": None}
               for f in table.column_names]  # fmt: skip
    meta = {"index_columns": list(index), "column_indexes": [], "columns": columns, "creator": {"library": "pyarrow", "version": pa.__version__},
            "pandas_version": pd.__version__}  # fmt: skip
    pq.write_table(table.replace_schema_metadata({b"pandas": json.dumps(meta).encode()}), path)
    return path


def test_a_parquet_field_is_read_under_its_own_name_whatever_the_pandas_metadata_calls_it(db_url: str, tmp_path: Path) -> None:
    """A Parquet file's pandas metadata may call its field ``religion`` ``genres``: the field is read, mapped and checked
    under the file's own name, so the mapping is refused; and a purge rewrites the file's own fields, none lost."""
    from audits.models import DecisionRecord

    items = pa.table({"item_id": [f"i{i}" for i in range(N_ITEMS)], "religion": [["a", "b", "c"][i % 3] for i in range(N_ITEMS)]})
    path = _renamed_by_pandas_metadata(tmp_path / "items.parquet", items, {"religion": "genres"})
    table = load_item_table(path, ItemMapping(category="religion"))
    assert table.attrs["columns_from"] == {"categories": "religion"}
    with pytest.raises(DataError, match="missing column"):
        load_item_table(path, ItemMapping(category="genres"))  # the name the metadata gave is no column of the file
    _grant(db_url)
    log = str(_log(tmp_path))
    refused = runner.invoke(app, ["train", log, "--no-carbon", "--no-tune", "--database-url", db_url, "--as-of", "2023-12-01", "--pack", "eu-gdpr-dsa",
                                  "--map", "user_id=uid,item_id=sku,timestamp=ts", "--items", str(path), "--items-map", "category=religion"])  # fmt: skip
    assert refused.exit_code == 2 and "item categories reads column 'religion'" in refused.stderr, refused.output
    assert _models(db_url) == (0, 0) and _count(db_url, DecisionRecord) == 0
    # an event log whose pandas metadata makes the user the index: read as a column, and purged without losing it
    events = pa.table({"user_id": ["a", "b"], "item_id": ["x", "y"], "timestamp": ["2020-01-01T00:00:00Z", "2026-01-01T00:00:00Z"],
                       "Religion": ["p", "q"]})  # fmt: skip
    log_path = _renamed_by_pandas_metadata(tmp_path / "events.parquet", events, {"Religion": "score"}, index=["user_id"])
    assert load_event_log(log_path).events["user_id"].tolist() == ["a", "b"]
    purged = runner.invoke(app, ["data", "purge", str(log_path), "--pack", "eu-gdpr-dsa", "--as-of", "2026-06-01", "--database-url", db_url, "--json"])
    assert purged.exit_code == 0, purged.output
    assert json.loads(purged.stdout)["events_purged"] == 1
    after = pq.read_table(log_path)
    assert after.column_names == events.column_names and after.column("user_id").to_pylist() == ["b"]


def test_a_provider_group_from_a_column_forbidden_for_every_use_is_refused_an_audit_only_one_is_not(tmp_path: Path) -> None:
    """The provider re-rankers read provider groups into the lists: a group read from an attribute forbidden for
    every use (ethnicity) is refused whatever the family; one read from an audit-only attribute (gender) is not."""
    from governance.family_inputs import refuse_banned_item_columns

    table = pd.DataFrame({"item_id": [f"i{i}" for i in range(N_ITEMS)], "owner_ethnicity": ["a", "b"] * (N_ITEMS // 2),
                          "owner_gender": ["f", "m"] * (N_ITEMS // 2), "studio": ["s"] * N_ITEMS})  # fmt: skip
    table.to_csv(tmp_path / "items.csv", index=False)
    data = load_event_log(_log(tmp_path), ColumnMapping(user_id="uid", item_id="sku", timestamp="ts"))
    for mapping, refused in [(ItemMapping(provider_group="owner_ethnicity"), True), (ItemMapping(provider="owner_ethnicity"), True),
                             (ItemMapping(provider_group="owner_gender"), False), (ItemMapping(provider="studio"), False)]:  # fmt: skip
        with_items = attach_items(data, load_item_table(tmp_path / "items.csv", mapping))
        if refused:
            with pytest.raises(ConfigError, match=r"minimization.forbidden_attributes.*reads column 'owner_ethnicity' \(ethnicity\)"):
                check_family_inputs(get_family("als"), EU, dataset=with_items)
            with pytest.raises(ConfigError, match="into the lists"):
                refuse_banned_item_columns(EU, with_items.items.attrs["columns_from"])
        else:
            check_family_inputs(get_family("als"), EU, dataset=with_items)
            refuse_banned_item_columns(EU, with_items.items.attrs["columns_from"])


def test_the_tradeoff_front_is_held_to_the_forbidden_attributes(tmp_path: Path) -> None:
    """The front fits ALS and re-ranks with the item table's categories and providers: a column naming a forbidden
    attribute is refused before any fit, as in training."""
    log, items = str(_log(tmp_path)), str(_items(tmp_path))
    base = ["tradeoff", log, "--pack", str(POLICIES / "eu-gdpr-dsa.yaml"), "--map", "user_id=uid,item_id=sku,timestamp=ts", "--seeds", "0"]
    for extra, what in [(["--items", items, "--items-map", "category=owner_religion"], "item categories reads column 'owner_religion'"),
                        (["--map", "user_id=uid,item_id=sku,timestamp=ts,value=Religion"], "event field value reads column 'Religion'")]:  # fmt: skip
        result = runner.invoke(app, [*base, *extra, "--json"])
        assert result.exit_code == 2, result.output
        assert what in result.stderr and "minimization.forbidden_attributes" in result.stderr
    from governance.tradeoff_front import tradeoff_front

    data = attach_items(load_event_log(_log(tmp_path), ColumnMapping(user_id="uid", item_id="sku", timestamp="ts")),
                        load_item_table(items, ItemMapping(category="owner_religion")))  # fmt: skip
    with pytest.raises(ConfigError, match="item categories reads column 'owner_religion'"):
        tradeoff_front(data, EU, seeds=[0])
