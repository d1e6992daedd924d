"""Red team, through the public CLI on SQLite and PostgreSQL: `recgov consent set` applies the evidence rule
the API applies (GDPR Art. 7(1)): a source that claims evidence brings it, and a TC string supports the status.

Hole pinned: `recgov consent set --source banner|import|tcf` stored the record whatever backed it (a free-text
note, or nothing), while `POST /v1/consent` refused the same record.
"""

from __future__ import annotations

import pytest
from cli_helpers import invoke, ok
from tc_strings import tc_string

from governance.cli.consent import EVIDENCE_MISSING, EVIDENCE_OF_OTHER_SOURCE, EVIDENCE_REFUSED
from governance.consent.evidence import EVIDENCE_KEYS, MSG_TC_NO_GRANT, MSG_TC_VENDOR

SUBJECT = "cli-evidence-subj-8812"
VENDOR = 755
ALLOWS = tc_string(purposes={1, 5, 6}, vendors={VENDOR})
REFUSES = tc_string(purposes={1, 2}, vendors={VENDOR})
BASE = ("consent", "set", SUBJECT, "--purpose", "personalization", "--status", "granted", "--pack", "eu-gdpr-dsa")


def _refused(db_url: str, *args: str) -> str:
    """The one line a refused `consent set` prints (exit 2), after checking nothing was stored."""
    result = invoke(*BASE, *args, "--database-url", db_url)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert SUBJECT not in result.stderr
    shown = ok("consent", "show", SUBJECT, "--database-url", db_url)
    assert shown["history"] == []
    return lines[0]


@pytest.mark.parametrize(("source", "option"), [("banner", "--evidence-banner-version"), ("import", "--evidence-origin"), ("tcf", "--tc-string")])
def test_a_source_that_claims_evidence_needs_it(db_url: str, source: str, option: str) -> None:
    """Hole: --source banner/import/tcf with no evidence (or only a --evidence note) was stored."""
    what = EVIDENCE_KEYS[source][1]
    line = _refused(db_url, "--source", source, "--evidence", "trust me")
    assert line == "error: " + EVIDENCE_MISSING.format(source=source, option=option, what=what)


def test_a_tc_string_must_decode_and_grant(db_url: str) -> None:
    """Hole: a tcf grant was stored whatever string (or none) backed it."""
    tcf = ("--source", "tcf", "--vendor-id", str(VENDOR))
    assert "--tc-string: evidence.tc_string is not a TC string" in _refused(db_url, *tcf, "--tc-string", "not-a-tc-string!")
    line = _refused(db_url, *tcf, "--tc-string", REFUSES)
    assert line.startswith("error: " + EVIDENCE_REFUSED.format(option="--tc-string", detail=MSG_TC_NO_GRANT.format(reason="")[:40]))
    assert _refused(db_url, "--source", "tcf", "--tc-string", ALLOWS) == "error: " + EVIDENCE_REFUSED.format(option="--vendor-id", detail=MSG_TC_VENDOR)
    assert _refused(db_url, "--source", "banner", "--evidence-banner-version", "v3", "--tc-string", ALLOWS) == "error: " + EVIDENCE_OF_OTHER_SOURCE.format(
        option="--tc-string", wanted="tcf", source="banner"
    )


def test_evidence_that_holds_is_stored_with_the_record(db_url: str) -> None:
    """The same records pass when their evidence holds, and the evidence is kept with them (and the string's decision)."""
    ok(*BASE, "--source", "banner", "--evidence-banner-version", "2026-03", "--database-url", db_url)
    ok(*BASE, "--source", "import", "--status", "denied", "--evidence-origin", "crm-export.csv", "--database-url", db_url)
    ok(*BASE, "--source", "tcf", "--tc-string", ALLOWS, "--vendor-id", str(VENDOR), "--database-url", db_url)
    history = ok("consent", "show", SUBJECT, "--database-url", db_url)["history"]
    evidence = [h["evidence"] for h in history]
    assert evidence[0] == {"via": "recgov consent set", "banner_version": "2026-03"}
    assert evidence[1] == {"via": "recgov consent set", "origin": "crm-export.csv"}
    assert evidence[2]["tc_string"] == ALLOWS and evidence[2]["vendor_id"] == VENDOR and evidence[2]["decision"]
