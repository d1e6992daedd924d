"""The summary's re-audit sentence: "the same pack" is the same pack content (its hash), not a pack of the same name."""

from __future__ import annotations

from governance.report.summary import _audit_sentences


def _audit(id_: int, verdict: str, version: str, digest: str) -> dict:
    results = [{"rule_id": "fair-exposure", "status": "fail" if verdict == "fail" else "pass"}]
    return {"id": id_, "verdict": verdict, "policy_pack": "eu-gdpr-dsa", "policy_version": version, "policy_hash": digest, "results": results}


def test_a_pass_under_a_changed_pack_of_the_same_name_is_no_re_audit_under_the_same_pack() -> None:
    """A pack of the same name with loosened rules (another hash) passing is said as such, not as a re-audit."""
    audits = [_audit(1, "fail", "1.0.0", "a" * 64), _audit(2, "pass", "1.1.0", "b" * 64)]
    text = " ".join(_audit_sentences(audits, []))
    assert "re-audited under the same pack" not in text
    assert "no passing re-audit under that pack (content hash aaaaaaaaaaaa) is recorded" in text
    assert "audit #2 passed under pack eu-gdpr-dsa 1.1.0 (content hash bbbbbbbbbbbb): other content" in text


def test_a_pass_under_the_same_content_is_a_re_audit_under_the_same_pack() -> None:
    audits = [_audit(1, "fail", "1.0.0", "a" * 64), _audit(2, "pass", "1.1.0", "b" * 64), _audit(3, "pass", "1.0.0", "a" * 64)]
    text = " ".join(_audit_sentences(audits, []))
    assert "it was re-audited under the same pack (content hash aaaaaaaaaaaa) and audit #3 passed" in text
    assert "audit #2" not in text
