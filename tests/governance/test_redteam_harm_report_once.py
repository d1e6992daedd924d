"""Red team, on SQLite and PostgreSQL: one reporter cannot take an item out of lists alone.

Hole pinned: ``reports_to_escalate`` counted reports, not reporters. One user reporting an item three times
(a double click, a retry, a grudge) opened a ``harm.reports`` case, and an item under an open case is kept
out of every list: anyone could withdraw any item from the service by reporting it repeatedly. A signed
reporter now counts once per item; a report without a reporter still counts as one.
"""

from __future__ import annotations

from audits.harm import list_cases, report_item
from governance.escalation import REASON_REPORTS, evaluate_escalations, items_out_of_lists
from governance.policy import load_pack

PACK = "policies/eu-gdpr-dsa.yaml"


def test_one_reporter_reporting_many_times_opens_no_case(store) -> None:  # noqa: ANN001
    pack = load_pack(PACK).pack
    threshold = pack.harmful_content.reports_to_escalate
    assert threshold > 1
    with store.session() as session:
        for _ in range(threshold + 2):
            report_item(session, item_id="i1", reason="I do not like it", reporter_id="u000001")
        assert evaluate_escalations(session, pack) == []
        assert "i1" not in items_out_of_lists(session, pack)
        assert list_cases(session, status="open") == []


def test_distinct_reporters_and_anonymous_reports_each_count(store) -> None:  # noqa: ANN001
    pack = load_pack(PACK).pack
    threshold = pack.harmful_content.reports_to_escalate
    with store.session() as session:
        for n in range(threshold - 1):  # distinct signed reporters, one of them twice
            report_item(session, item_id="i2", reason="misleading", reporter_id=f"u{n:06d}")
        report_item(session, item_id="i2", reason="misleading", reporter_id="u000000")
        assert evaluate_escalations(session, pack) == []  # one short
        report_item(session, item_id="i2", reason="misleading")  # an anonymous report counts as one
        opened = evaluate_escalations(session, pack)
        assert [(c["item_id"], c["rule"]) for c in opened] == [("i2", "harm.reports")]
        (case,) = list_cases(session, status="open")
        assert case["reason"] == REASON_REPORTS.format(n=threshold, threshold=threshold)
        assert "i2" in items_out_of_lists(session, pack)
