"""``recgov online-store warm``: heavy users' factors and lists go to Redis only for those who may be profiled now."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from audits import open_store, record_consent
from governance.cli import app

runner = CliRunner()
DATA = "synthetic:n_users=60,n_items=50,n_interactions=2000,seed=4"


def test_warm_fills_lists_and_factors_of_consenting_heavy_users_only(tmp_path, online_store, monkeypatch) -> None:
    import audits.online_store as online

    db_url = f"sqlite:///{tmp_path / 'store.db'}"
    trained = runner.invoke(app, ["train", DATA, "--no-tune", "--no-carbon", "--factors", "8", "--iterations", "3", "--database-url", db_url, "--json"])
    assert trained.exit_code == 0, trained.output
    version = json.loads(trained.stdout)["model_version"]
    unconfigured = runner.invoke(app, ["online-store", "warm", "--model", version, "--database-url", db_url])
    assert unconfigured.exit_code == 2 and "RECGOV_REDIS_URL" in unconfigured.output
    url = "redis://online-store-under-test"
    monkeypatch.setenv("RECGOV_REDIS_URL", url)
    monkeypatch.setitem(online._STORES, url, online_store)
    subjects = [f"u{n:06d}" for n in range(60)]
    store = open_store(db_url)
    try:
        with store.session() as session:
            for s in subjects:
                status = "denied" if s == "u000007" else "granted"
                record_consent(session, subject_id=s, purpose="personalization", status=status, lawful_basis="consent", source="api")
    finally:
        store.close()
    result = runner.invoke(app, ["online-store", "warm", "--model", version, "--pack", "eu-gdpr-dsa", "--top", "60", "--database-url", db_url, "--json"])
    assert result.exit_code == 0, result.output
    done = json.loads(result.stdout)
    assert done["heavy_users"] == 60 and done["lists_stored"] == 59 and done["factors_stored"] == 59
    ns = online_store.namespace
    assert online_store.client.exists(f"{ns}:l:{online_store.subject_key('u000008')}")
    assert not online_store.client.exists(f"{ns}:l:{online_store.subject_key('u000007')}")
    assert online_store.user_factors(version, online_store.subject_key("u000007")) is None
    assert "u0000" not in result.output  # counts only, no subject id


def _trained_with_online_store(tmp_path, online_store, monkeypatch) -> tuple[str, str]:
    """A small model trained into a fresh SQLite store, and ``online_store`` as the store RECGOV_REDIS_URL names."""
    import audits.online_store as online

    db_url = f"sqlite:///{tmp_path / 'store.db'}"
    trained = runner.invoke(app, ["train", DATA, "--no-tune", "--no-carbon", "--factors", "8", "--iterations", "3", "--database-url", db_url, "--json"])
    assert trained.exit_code == 0, trained.output
    url = "redis://online-store-under-test"
    monkeypatch.setenv("RECGOV_REDIS_URL", url)
    monkeypatch.setitem(online._STORES, url, online_store)
    return db_url, json.loads(trained.stdout)["model_version"]


def test_warm_stores_nothing_of_a_subject_erased_while_their_consent_was_read(tmp_path, online_store, monkeypatch) -> None:
    """The fill reads each subject's epochs before their consent: an erasure that commits after the consent read
    (its invalidation bumps the epoch) refuses both the list and the factors made from the old consent."""
    import governance.online_warm as online_warm

    db_url, version = _trained_with_online_store(tmp_path, online_store, monkeypatch)
    store = open_store(db_url)
    try:
        with store.session() as session:
            for s in (f"u{n:06d}" for n in range(60)):
                record_consent(session, subject_id=s, purpose="personalization", status="granted", lawful_basis="consent", source="api")
    finally:
        store.close()
    victim = online_store.subject_key("u000008")
    real = online_warm.consent_history

    def read_then_erased(session, subject):
        history = real(session, subject)
        if subject == "u000008":  # the erasure commits just after the fill read the granted consent (no hold)
            online_store.invalidate([victim])
        return history

    monkeypatch.setattr(online_warm, "consent_history", read_then_erased)
    result = runner.invoke(app, ["online-store", "warm", "--model", version, "--pack", "eu-gdpr-dsa", "--top", "60", "--database-url", db_url, "--json"])
    assert result.exit_code == 0, result.output
    done = json.loads(result.stdout)
    assert done["lists_stored"] == 59 and done["factors_stored"] == 59
    ns = online_store.namespace
    assert not online_store.client.exists(f"{ns}:l:{victim}")
    assert online_store.user_factors(version, victim) is None
    other = online_store.subject_key("u000009")
    assert 0 < online_store.client.pttl(f"{ns}:uf:{version}:{other}") <= online_store.ttl_ms  # factors expire too


def test_a_bad_redis_url_is_one_located_line_that_never_repeats_it_and_nothing_is_written(tmp_path, monkeypatch) -> None:
    """A mistyped RECGOV_REDIS_URL was a ValueError traceback from redis-py (or, for a database that is not a
    number, silently database 0); it must be one line naming the variable and what is wrong, exit 2, and
    neither the database nor Redis touched. The URL may hold a password: it is never repeated."""
    db = tmp_path / "store.db"
    cases = {
        "foo://s3cret@host/0": "the scheme must be redis://",
        "redis://:s3cret@127.0.0.1:notaport/0": "the port must be a number",
        "redis://:s3cret@127.0.0.1:6379/zero": "the database must be a number",
        "redis://:s3cret@127.0.0.1:6379?db=x": "the database must be a number",
    }
    for url, why in cases.items():
        monkeypatch.setenv("RECGOV_REDIS_URL", url)
        for args in (["online-store", "drain"], ["online-store", "warm", "--model", "m"]):
            result = runner.invoke(app, [*args, "--database-url", f"sqlite:///{db}"])
            assert result.exit_code == 2, (url, result.output)
            assert result.exception is None or isinstance(result.exception, SystemExit)
            assert f"RECGOV_REDIS_URL: {why}" in result.output, result.output
            assert "s3cret" not in result.output and "Traceback" not in result.output
            assert not db.exists()  # nothing opened, nothing written


def test_warm_makes_lists_over_the_item_table_the_api_serves_with(tmp_path, online_store, monkeypatch) -> None:
    """``warm`` made its lists without any item table (no provider groups, no categories: the pack's provider
    calibration did nothing), which servers with the table then served as the pack's lists. It now reads the
    table the API reads (the model's dataset), so a server with it reads warm's lists back, and they are its own."""
    from governance.governed_list import serve_list
    from governance.policy import load_pack
    from recommender.loaders import load_data

    db_url, version = _trained_with_online_store(tmp_path, online_store, monkeypatch)
    store = open_store(db_url)
    try:
        with store.session() as session:
            for n in range(60):
                record_consent(session, subject_id=f"u{n:06d}", purpose="personalization", status="granted", lawful_basis="consent", source="api")
        result = runner.invoke(app, ["online-store", "warm", "--model", version, "--pack", "eu-gdpr-dsa", "--top", "10", "--database-url", db_url, "--json"])
        assert result.exit_code == 0 and json.loads(result.stdout)["lists_stored"] > 0, result.output
        loaded = load_pack("policies/eu-gdpr-dsa.yaml")
        items = load_data(DATA).items  # what the API's engine is built with (the model's dataset's item table)
        served = [serve_list(store, loaded, version, f"u{n:06d}", k=10, items=items) for n in range(60)]
        assert sum(s.list_source == "online_store" for s in served) >= 5  # warm's lists, read back
        monkeypatch.delenv("RECGOV_REDIS_URL")
        for n, cached in enumerate(served):  # and each is the list such a server makes itself
            made = serve_list(store, loaded, version, f"u{n:06d}", k=10, items=items)
            assert made.list_source is None and (cached.items, cached.tags) == (made.items, made.tags)
    finally:
        store.close()
