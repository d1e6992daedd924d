"""The DSA Art. 27 disclosure is derived from what is in force, not written by hand."""

from __future__ import annotations

from typer.testing import CliRunner

from governance.cli import app
from governance.disclosure import disclosure, disclosure_markdown
from governance.policy import load_pack, parse_pack


def test_disclosure_follows_the_pack() -> None:
    eu = load_pack("policies/eu-gdpr-dsa.yaml").pack
    doc = disclosure(eu, {"factors": 64})
    assert doc["inputs"] == ["user_id", "item_id", "event_type", "value"]
    assert "gender" in doc["not_used"] and "religion" in doc["not_used"]
    assert any("consent" in o and "withdraw" in o for o in doc["options"])
    assert any("Sec-GPC: 1" in o for o in doc["options"])
    assert doc["model"]["params"] == {"factors": 64}
    # A pack with an opt-out basis and re-ranking says so, and no longer claims consent is needed.
    text = open("policies/california-ccpa.yaml").read() + "reranking:\n  enabled: true\n  steps:\n    - {name: mmr, params: {tradeoff: 0.3}}\n"
    ca = disclosure(parse_pack(text, "ca.yaml").pack)
    assert not any("needs your consent" in o for o in ca["options"])
    assert any("object" in o for o in ca["options"])
    assert [s["step"] for s in ca["post_processing"]] == ["mmr"]
    md = disclosure_markdown(ca)
    assert md.startswith("# How recommendations are made (california-ccpa") and "diversified" in md


def test_disclosure_command() -> None:
    result = CliRunner().invoke(app, ["policy", "disclosure", "eu-gdpr-dsa"])
    assert result.exit_code == 0 and "**Your options.**" in result.stdout
    missing = CliRunner().invoke(app, ["policy", "disclosure", "baseline", "--model", "als-nope"])
    assert missing.exit_code == 2 and "is not in the store" in missing.stderr


def test_every_registered_reranker_is_described_in_plain_language() -> None:
    from governance.disclosure import _STEP_TEXT
    from governance.rerank import registered_rerankers

    missing = sorted(set(registered_rerankers()) - set(_STEP_TEXT))
    assert not missing, f"re-rankers without a disclosure text: {missing}"
    eu = disclosure(load_pack("policies/eu-gdpr-dsa.yaml").pack)
    assert [s["step"] for s in eu["post_processing"]] == ["provider_calibration"]
    assert "providers" in eu["post_processing"][0]["what"]
