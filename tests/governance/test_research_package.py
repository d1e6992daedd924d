"""The researchers' data-access package (DSA Art. 40), read back and held against the store.

One store: consent for five users in six, a model trained under the EU pack, and
a governed list served to 120 users (personalized, and not based on profiling
for the users who denied consent). The package must hold the store's figures,
suppress every cell under the minimum group size, and carry no raw id and no
store pseudonym in any of its files.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from report_store import CONSENTED_DATA, ConsentedStore, consent_denied
from sqlalchemy import select

from audits import lookup_pseudonyms, open_store, record_consent
from audits.models import DecisionRecord, TrailEvent
from governance.cli import app
from governance.governed_list import serve_list
from governance.packs import resolve_pack
from governance.policy import load_pack
from governance.report.research import MIN_GROUP_TOO_SMALL, PACKAGE_FILES, write_research_package
from recommender.errors import ConfigError
from recommender.loaders import load_data

DATA = CONSENTED_DATA
SERVED = [f"u{u:06d}" for u in range(120)]


def _rows(url: str, *columns, where=()):
    store = open_store(url)
    try:
        with store.session() as session:
            return session.execute(select(*columns).where(*where)).all()
    finally:
        store.close()


def _csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def built(consented_store: ConsentedStore) -> Iterator[dict[str, object]]:
    root, url = consented_store.root, consented_store.url
    model = consented_store.train_under_eu_pack()
    loaded, items = load_pack(resolve_pack("eu-gdpr-dsa")), load_data(DATA).items
    store = open_store(url)
    try:
        for user in SERVED:
            serve_list(store, loaded, model, user, k=5, items=items)
    finally:
        store.close()
    out = root / "package"
    said = json.loads(consented_store.cli("research-package", model, "--out", str(out), "--data", DATA, "--json"))
    yield {"url": url, "model": model, "root": root, "out": out, "said": said, "runner": consented_store.runner, "items": items}


@pytest.fixture(autouse=True)
def _the_stores_home(built: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests that open the store in-process need its installation key, under the store's RECGOV_HOME."""
    monkeypatch.setenv("RECGOV_HOME", str(built["root"] / "home"))
    monkeypatch.setenv("RECGOV_DATABASE_URL", built["url"])


def test_decisions_by_day_are_the_stores(built: dict) -> None:
    rows = _rows(built["url"], DecisionRecord.decided_at, DecisionRecord.mode, DecisionRecord.subject,
                 where=[DecisionRecord.model_version == built["model"]])  # fmt: skip
    assert len(rows) == len(SERVED)
    expected = Counter((at.date().isoformat(), mode) for at, mode, _ in rows)
    published = _csv(built["out"] / "decisions_by_day.csv")
    assert {(r["day"], r["mode"]) for r in published} == set(expected)
    for r in published:
        subjects = len({s for at, mode, s in rows if (at.date().isoformat(), mode) == (r["day"], r["mode"])})
        if subjects >= 10:
            assert r["suppressed"] == "False" and int(r["decisions"]) == expected[r["day"], r["mode"]] and int(r["subjects"]) == subjects
        else:
            assert r["suppressed"] == "True" and r["decisions"] == r["subjects"] == ""
    assert any(r["mode"] == "non_profiling" and r["suppressed"] == "False" for r in published)


def test_small_cells_are_suppressed(built: dict, tmp_path: Path) -> None:
    non_profiling = sum(int(u[1:]) % 6 == 0 for u in SERVED)  # the users who denied consent: 20
    store = open_store(built["url"])
    try:
        with store.session() as session:
            package = write_research_package(session, built["model"], tmp_path / "p", items=built["items"], min_group=non_profiling + 1)
    finally:
        store.close()
    by_mode = {r["mode"]: r for r in _csv(tmp_path / "p" / "decisions_by_day.csv")}
    assert by_mode["non_profiling"]["suppressed"] == "True" and by_mode["non_profiling"]["decisions"] == ""
    assert by_mode["personalized"]["suppressed"] == "False" and int(by_mode["personalized"]["subjects"]) > non_profiling
    assert package.suppressed["decisions_by_day.csv"] >= 1
    slates = _csv(tmp_path / "p" / "slates.csv")
    reach: dict[str, set[str]] = {}
    for r in _csv(built["out"] / "slates.csv"):
        reach.setdefault(r["item_id"], set()).add(r["package_subject"])
    assert all(r["item_id"] == "suppressed" or len(reach[r["item_id"]]) > non_profiling for r in slates)
    for name in ("exposure_by_provider_group.csv", "exposure_by_category.csv"):
        for r in _csv(tmp_path / "p" / name):
            assert (r["suppressed"] == "True") == (r["impressions"] == "") and (r["subjects"] == "" or int(r["subjects"]) > non_profiling)


def test_slates_and_exposure_are_the_served_lists(built: dict) -> None:
    store = open_store(built["url"])
    try:  # loaded as entities, the slates are opened with their subjects' record keys
        with store.session() as session:
            slates = [r.slate for r in session.scalars(select(DecisionRecord).where(DecisionRecord.model_version == built["model"]))]
    finally:
        store.close()
    served = Counter(item for s in slates for item in s["items"])
    published = _csv(built["out"] / "slates.csv")
    assert len(published) == sum(served.values())
    assert len({r["list"] for r in published}) == len(slates) and len({r["package_subject"] for r in published}) == len(SERVED)
    shown = Counter(r["item_id"] for r in published if r["item_id"] != "suppressed")
    assert all(served[item] == n for item, n in shown.items())
    groups = built["items"]["provider_group"].astype(str)
    expected = Counter(groups[item] for item in served.elements())
    exposure = _csv(built["out"] / "exposure_by_provider_group.csv")
    assert {r["provider_group"] for r in exposure} == set(expected)
    for r in exposure:
        if r["suppressed"] == "False":
            assert int(r["impressions"]) == expected[r["provider_group"]]
    shares = [float(r["exposure_share"]) for r in exposure if r["exposure_share"]]
    assert sum(shares) == pytest.approx(1.0) if len(shares) == len(exposure) else sum(shares) <= 1.0


def test_no_raw_id_and_no_store_pseudonym_in_the_package(built: dict) -> None:
    pseudonyms = {s for (s,) in _rows(built["url"], DecisionRecord.subject) if s}
    pseudonyms |= {s for (s,) in _rows(built["url"], TrailEvent.subject) if s}
    assert len(pseudonyms) >= len(SERVED)
    texts = {p.name: p.read_text(encoding="utf-8") for p in built["out"].iterdir()}
    assert set(texts) == {"README.md", "manifest.json", "decisions_by_day.csv", "slates.csv",
                          "exposure_by_provider_group.csv", "exposure_by_category.csv"}  # fmt: skip
    for name, text in texts.items():
        assert not any(p in text or p[:16] in text for p in pseudonyms), name
        assert not any(u in text for u in SERVED), name
    columns = set(_csv(built["out"] / "slates.csv")[0])
    assert columns == {"package_subject", "list", "day", "mode", "rank", "item_id"}
    for attribute in ("gender", "age_band", "country", "score"):
        assert attribute not in texts["slates.csv"].splitlines()[0]
        assert attribute not in texts["decisions_by_day.csv"].splitlines()[0]


def test_a_new_package_draws_new_subject_ids(built: dict, tmp_path: Path) -> None:
    store = open_store(built["url"])
    try:
        with store.session() as session:
            write_research_package(session, built["model"], tmp_path / "again")
    finally:
        store.close()
    first = {r["package_subject"] for r in _csv(built["out"] / "slates.csv")}
    again = {r["package_subject"] for r in _csv(tmp_path / "again" / "slates.csv")}
    assert len(again) == len(first) and not first & again
    assert not (tmp_path / "again" / "exposure_by_category.csv").exists()
    assert "left out: no item table was given" in (tmp_path / "again" / "README.md").read_text(encoding="utf-8")


def test_the_package_is_on_the_trail_with_its_file_hashes(built: dict) -> None:
    out = built["out"]
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    for name, digest in manifest["files"].items():
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() == digest
    assert built["said"]["files"] == manifest["files"] and manifest["parameters"]["min_group"] == 10
    events = _rows(built["url"], TrailEvent.seq, TrailEvent.subject, TrailEvent.payload, where=[TrailEvent.action == "research.package_written"])
    seq, subject, payload = next(e for e in events if e.seq == built["said"]["trail_seq"])
    recorded = json.loads(payload)
    assert subject is None and recorded["files"] == manifest["files"] and recorded["parameters"] == manifest["parameters"]
    assert recorded["manifest_sha256"] == hashlib.sha256((out / "manifest.json").read_bytes()).hexdigest()
    readme = (out / "README.md").read_text(encoding="utf-8")
    for column in ("package_subject", "exposure_share", "suppressed", "impressions", "decisions", "item_id"):
        assert f"| {column} |" in readme


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("no-such-model",), "no-such-model"),
        (("{model}", "--min-group", "1"), MIN_GROUP_TOO_SMALL.format(value=1)),
        (("{model}", "--since", "yesterday"), "--since must be an ISO 8601 date"),
    ],
)
def test_bad_input_exits_2_and_writes_nothing(built: dict, tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    argv = [a.format(model=built["model"]) for a in args]
    done = built["runner"].invoke(
        app,
        ["research-package", *argv, "--out", str(tmp_path / "p"), "--database-url", built["url"]],
    )
    assert done.exit_code == 2, done.output
    assert message in " ".join(done.stderr.split()) and not (tmp_path / "p").exists()


def test_a_folder_that_is_a_file_or_not_empty_is_refused(built: dict, tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("x")
    store = open_store(built["url"])
    try:
        with store.session() as session:
            for target, reason in ((tmp_path / "file", "it is a file"), (tmp_path / "full", "the folder is not empty")):
                with pytest.raises(ConfigError, match=reason):
                    write_research_package(session, built["model"], target)
            with pytest.raises(ConfigError, match="since .* must be before until"):
                            write_research_package(session, built["model"], tmp_path / "w", since=datetime(2026, 2, 1, tzinfo=UTC), until=datetime(2026, 1, 1, tzinfo=UTC))
    finally:
        store.close()
    assert [p.name for p in (tmp_path / "full").iterdir()] == ["keep.txt"]


def test_an_empty_window_writes_empty_files(built: dict, tmp_path: Path) -> None:
    store = open_store(built["url"])
    try:
        with store.session() as session:
            package = write_research_package(session, built["model"], tmp_path / "p", items=built["items"], since=datetime(2100, 1, 1, tzinfo=UTC))
    finally:
        store.close()
    assert set(package.rows.values()) == {0} and set(package.files) | {"manifest.json"} == set(PACKAGE_FILES)
    assert _csv(tmp_path / "p" / "slates.csv") == []


def test_a_package_whose_trail_event_fails_is_removed(built: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import governance.report.research as research

    def refuse(*_args, **_kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(research, "append_event", refuse)
    done = built["runner"].invoke(
        app,
        ["research-package", built["model"], "--out", str(tmp_path / "p"), "--database-url", built["url"]],
    )
    assert done.exit_code == 2 and "No space left on device" in done.stderr
    assert not (tmp_path / "p").exists()


def test_an_analytics_objection_leaves_the_subjects_lists_out_and_is_counted(built: dict, tmp_path: Path) -> None:
    """Hole: the package opened every list of the model, though off-policy evaluation and experiment looks leave
    out a subject who objected to analytics (GDPR Art. 21)."""
    before = json.loads((built["out"] / "manifest.json").read_text(encoding="utf-8"))["consent"]
    assert before["model"] == "opt_out" and before["packs_not_read"] == []
    assert before["excluded"]["analytics_consent_not_in_force"] == {"lists": 0, "subjects": 0}
    objector = next(u for u in SERVED if not consent_denied(int(u[1:])))
    store = open_store(built["url"])
    try:
        with store.session() as session:
            record_consent(session, subject_id=objector, purpose="analytics", status="objected", lawful_basis="legitimate_interest", source="api")
            who = lookup_pseudonyms(session, [objector])[objector]
        with store.session() as session:
            package = write_research_package(session, built["model"], tmp_path / "p")
    finally:
        store.close()
    lists = len(_rows(built["url"], DecisionRecord.decision_id, where=[DecisionRecord.subject == who, DecisionRecord.model_version == built["model"]]))
    assert lists >= 1 and package.consent["excluded"]["analytics_consent_not_in_force"] == {"lists": lists, "subjects": 1}
    manifest = json.loads((tmp_path / "p" / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["consent"] == package.consent
    slates = _csv(tmp_path / "p" / "slates.csv")
    assert len({r["package_subject"] for r in slates}) == len(SERVED) - 1
    assert sum(int(r["decisions"]) for r in _csv(tmp_path / "p" / "decisions_by_day.csv")) == len(SERVED) - lists
    assert f"{lists} list(s) of 1 subject(s) left out" in (tmp_path / "p" / "README.md").read_text(encoding="utf-8")


def test_a_lone_suppressed_share_cannot_be_worked_out_from_the_others() -> None:
    """Hole: with one group suppressed, its exposure share was one minus the published shares."""
    import numpy as np
    import pandas as pd

    from governance.report.research import _exposure

    rows = [(f"s{s}", f"i{g}", rank) for g, n in ((0, 12), (1, 15), (2, 3)) for s in range(n) for rank in (1, 2)]
    served = pd.DataFrame(rows, columns=["subject", "item_id", "rank"])
    groups = pd.Series(["big", "bigger", "small"], index=["i0", "i1", "i2"])
    frame, suppressed = _exposure(served, groups, "provider_group", 10)
    assert suppressed == 1
    shares = dict(zip(frame["provider_group"], frame["exposure_share"]))
    assert np.isnan(shares["small"]) and np.isnan(shares["big"]) and not np.isnan(shares["bigger"])
    assert int(frame.set_index("provider_group").loc["big", "subjects"]) == 12  # its counts stay
