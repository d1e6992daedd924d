"""The reviewer's console in a real headless Chromium: what a reviewer, an auditor and a viewer see and can do.

Playwright drives the system's Chromium (no browser download), as the lineage
report's browser tests do; no Chromium or no Playwright skips these tests,
except under ``CI=true``, where it fails them. Every page visited is checked
for accessibility in the DOM the browser rendered, twice: by axe-core (the
rules of WCAG 2.x A and AA; no violation of serious or critical impact may
remain) and by :mod:`console_a11y` (landmarks, labels, heading order, the skip
link); each page is saved as a screenshot under ``$RECGOV_TEST_ARTIFACTS/console``.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest
from conftest import CONSENTING, EU_PACK, MODEL_VERSION, PACK_NAME, ConsoleServer
from console_a11y import accessibility_problems
from console_privacy import all_trail_events, assert_nowhere_in_the_trail, server_log

from governance.report.pdf import PdfError, find_browser

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"]
VIEWPORT = {"width": 1280, "height": 900}


def _unavailable(reason: str) -> NoReturn:
    """Skip for lack of a browser, but fail under CI, which must run these tests."""
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium for the module."""
    try:
        chromium = find_browser()
    except PdfError as err:
        _unavailable(f"no local Chromium for the browser tests: {err}")
    try:
        from playwright.sync_api import Error, sync_playwright
    except ImportError as err:
        _unavailable(f"Playwright is not installed ({err}): pip install -e '.[dev]'")
    with sync_playwright() as playwright:
        try:
            launched = playwright.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS, timeout=30_000)
        except Error as err:
            _unavailable(f"Chromium at {chromium} does not start under Playwright: {str(err).splitlines()[0]}")
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh browser window (its own cookies)."""
    context = browser.new_context(viewport=VIEWPORT)
    try:
        yield context.new_page()
    finally:
        context.close()


SERIOUS = ("serious", "critical")
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"]


def axe_violations(page: Any) -> list[str]:
    """The serious and critical axe-core violations of the page as the browser rendered it (rule: nodes)."""
    try:
        from axe_playwright_python.sync_playwright import Axe
    except ImportError as err:
        _unavailable(f"axe-core for Playwright is not installed ({err}): pip install -e '.[dev]'")
    found = Axe().run(page, options={"runOnly": {"type": "tag", "values": AXE_TAGS}, "resultTypes": ["violations"]})
    return [
        f"{v['id']} ({v['impact']}): {', '.join(str(n['target']) for n in v['nodes'])}"
        for v in found.response["violations"]
        if v.get("impact") in SERIOUS
    ]


def _checked(page: Any, artifacts: Path, name: str, *, navigation: bool = True) -> None:
    """The page passes axe-core and the structural check; its screenshot is saved as ``name``.png."""
    assert axe_violations(page) == [], page.url
    assert accessibility_problems(page.content(), navigation=navigation) == [], page.url
    page.screenshot(path=str(artifacts / f"{name}.png"), full_page=True)


def _sign_in(page: Any, server: ConsoleServer, role: str, artifacts: Path, start: str = "/console/audits") -> None:
    """Open ``start``, be sent to the sign-in form, and sign in with the key of ``role`` from the keyboard."""
    page.goto(server.url + start)
    assert page.url.startswith(server.url + "/console/login")
    _checked(page, artifacts, f"sign-in-{role}", navigation=False)
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to the content"
    page.get_by_label("API key").fill(server.tokens[role])
    page.get_by_label("API key").press("Enter")
    page.wait_for_url(server.url + start)


def test_a_reviewer_triages_then_resolves_a_case_and_the_trail_shows_the_key(page: Any, server: ConsoleServer, artifacts: Path) -> None:
    case_id = server.case_ids[4]
    item = server.case(case_id)["item_id"]
    _sign_in(page, server, "admin", artifacts)
    _checked(page, artifacts, "audit-runs")
    page.get_by_role("link", name="Escalation queue").click()
    assert page.get_by_role("heading", level=1).inner_text() == "Escalation queue"
    _checked(page, artifacts, "escalation-queue")
    page.get_by_label(f"Note for case {case_id}").fill("reviewing the reports")
    page.get_by_role("button", name=f"Triage case {case_id}", exact=True).click()
    assert page.get_by_role("status").inner_text() == f"Case {case_id} is now triaged."
    page.get_by_label(f"Item {item}").select_option("block")
    page.get_by_label(f"Note for case {case_id}").fill("abusive: item blocked")
    page.get_by_role("button", name=f"Resolve case {case_id}", exact=True).click()
    assert page.get_by_role("status").inner_text() == f"Case {case_id} is now resolved."
    _checked(page, artifacts, "escalation-queue-after")
    page.get_by_role("link", name="Audit trail").click()
    _checked(page, artifacts, "audit-trail")
    actor = f"key:{server.key_ids['admin']}:console-admin"
    rows = page.get_by_role("row").filter(has_text=actor).all_inner_texts()
    actions = [re.split(r"\t", row)[3] for row in rows]
    assert {"case.triaged", "case.resolved", "item.blocked", "api.console.escalations.transition"} <= set(actions)
    assert "trail intact" in page.get_by_role("status").inner_text()
    assert server.case(case_id)["status"] == "resolved"


def test_an_auditor_reads_an_audit_and_its_gate(page: Any, server: ConsoleServer, artifacts: Path) -> None:
    job = server.audit_job
    _sign_in(page, server, "auditor", artifacts)
    page.get_by_role("link", name=job["id"]).click()
    assert page.get_by_role("heading", name="Gate decision").is_visible()
    assert page.get_by_role("heading", name="Rules and their evidence").is_visible()
    table = page.get_by_role("table").filter(has=page.get_by_role("columnheader", name="Evidence"))
    assert table.get_by_role("row").count() == len(job["results"]) + 1
    with_evidence = next(r["rule_id"] for r in job["results"] if r["evidence"])
    summary = page.get_by_text(f"Evidence for {with_evidence}", exact=True)
    summary.focus()
    page.keyboard.press("Enter")  # a <details> opens from the keyboard
    assert page.locator("details[open]").count() == 1
    _checked(page, artifacts, "audit-detail")
    page.get_by_role("link", name="Deployments").click()
    assert page.get_by_role("heading", name="Production").is_visible()
    _checked(page, artifacts, "deployments")


def test_a_viewer_has_no_action_and_a_forged_post_is_refused(page: Any, server: ConsoleServer, artifacts: Path) -> None:
    case_id = server.case_ids[5]
    _sign_in(page, server, "viewer", artifacts)
    assert page.get_by_role("link", name="Escalation queue").count() == 0
    answer = page.goto(server.url + "/console/escalations")
    assert answer.status == 403 and page.get_by_role("button", name=re.compile("case")).count() == 0
    _checked(page, artifacts, "escalation-queue-viewer")
    csrf = page.locator("input[name=csrf_token]").first.get_attribute("value")
    head = server.trail_head()
    forged = page.request.post(f"{server.url}/console/escalations/{case_id}", form={"csrf_token": csrf, "status": "resolved", "action": "block"})
    assert forged.status == 403
    assert server.case(case_id)["status"] == "open" and server.trail_head() == head


def test_a_viewer_follows_a_model_to_its_lineage_and_compares_two_pack_versions(page: Any, server: ConsoleServer, artifacts: Path) -> None:
    _sign_in(page, server, "viewer", artifacts)
    page.get_by_role("link", name="Deployments").click()
    page.get_by_role("link", name=MODEL_VERSION, exact=True).click()
    assert page.get_by_role("heading", level=1).inner_text() == f"Lineage of {MODEL_VERSION}"
    for heading in ("Training run", "Model version", "Audits", "Deployments", "Trail events"):
        assert page.get_by_role("heading", name=re.compile(f"^{heading}")).is_visible()
    _checked(page, artifacts, "lineage")
    assert page.goto(f"{server.url}/console/lineage/no-such-model").status == 404
    _checked(page, artifacts, "lineage-not-found")
    page.goto(server.url + "/console/audits")
    page.get_by_role("link", name="Policy packs").click()
    _checked(page, artifacts, "packs")
    page.get_by_role("link", name=f"Compare versions of {PACK_NAME}").click()
    assert page.get_by_role("row").filter(has_text="default_max_share").inner_text().split("\t")[2:] == ["0.05", "0.02", "yes", "stricter"]
    assert page.get_by_role("row").filter(has_text="carbon-budget").inner_text().split("\t")[-1] == "looser"
    assert page.get_by_role("definition").filter(has_text="stricter").inner_text() == "2 stricter, 1 looser"
    _checked(page, artifacts, "pack-diff")
    page.get_by_label("From version").select_option("1.1.0")
    page.get_by_label("To version").select_option("1.0.0")
    page.get_by_role("button", name="Compare").click()
    page.wait_for_url(re.compile(r"from=1\.1\.0&to=1\.0\.0"))
    added = page.get_by_role("table").filter(has=page.get_by_role("columnheader", name="Its settings and thresholds in 1.0.0")).first
    assert added.get_by_role("rowheader").all_inner_texts() == ["carbon-budget"]  # reversed: the carbon rule comes back
    assert page.get_by_role("row").filter(has_text="default_max_share").inner_text().split("\t")[-1] == "looser"
    assert page.get_by_role("definition").filter(has_text="stricter").inner_text() == "1 stricter, 2 looser"
    _checked(page, artifacts, "pack-diff-reversed")
    assert page.goto(f"{server.url}/console/packs/{PACK_NAME}?from=1.0.0&to=9.9.9").status == 404
    _checked(page, artifacts, "pack-diff-not-found")
    assert page.get_by_role("link", name="Subject requests").count() == 0
    assert page.goto(server.url + "/console/requests").status == 403
    _checked(page, artifacts, "subject-requests-viewer")


def test_an_auditor_reads_the_subject_requests_and_their_deadlines(page: Any, server: ConsoleServer, artifacts: Path) -> None:
    ids = server.request_ids
    _sign_in(page, server, "auditor", artifacts)
    page.get_by_role("link", name="Subject requests").click()
    assert page.get_by_role("heading", level=1).inner_text() == "Subject requests"
    assert "overdue" in page.locator(f"#request-{ids['overdue']}").inner_text()
    assert "overdue" not in page.locator(f"#request-{ids['due']}").inner_text()
    _checked(page, artifacts, "subject-requests")
    page.get_by_label("Kind").select_option("erasure")
    page.get_by_role("button", name="Show").click()
    page.wait_for_url(re.compile(r"kind=erasure"))
    assert page.locator(f"#request-{ids['overdue']}").count() == 1 and page.locator(f"#request-{ids['due']}").count() == 0
    _checked(page, artifacts, "subject-requests-erasures")
    page.get_by_label("Overdue only").check()  # the filters hold together: erasures still open past their deadline
    page.get_by_role("button", name="Show").click()
    page.wait_for_url(re.compile(r"overdue=true"))
    assert page.locator(f"#request-{ids['overdue']}").count() == 1 and page.locator(f"#request-{ids['completed']}").count() == 0
    assert page.get_by_label("Overdue only").is_checked() and page.get_by_label("Kind").input_value() == "erasure"
    _checked(page, artifacts, "subject-requests-overdue")


def _tab_to(page: Any, selector: str, most: int = 40) -> int:
    """Press Tab until the element ``selector`` has the focus; the number of presses (fails past ``most``)."""
    for presses in range(1, most + 1):
        page.keyboard.press("Tab")
        if page.evaluate("(s) => document.activeElement === document.querySelector(s)", selector):
            return presses
    raise AssertionError(f"{selector} is not reachable with Tab within {most} presses")


def test_a_reviewer_looks_up_a_subjects_consent_under_the_eu_pack_from_the_keyboard_and_the_id_is_nowhere(page: Any, server: ConsoleServer, artifacts: Path) -> None:
    from playwright.sync_api import expect

    urls: list[str] = []
    page.on("request", lambda request: urls.append(request.url))
    with server.api("operator") as api:
        pseudonym = api.get(f"/v1/consent/{CONSENTING}").json()["subject"]
    head = server.trail_head()
    with server_log() as lines:
        _sign_in(page, server, "operator", artifacts)
        page.get_by_role("navigation", name="Console").get_by_role("link", name="Consent").click()
        assert page.get_by_role("heading", level=1).inner_text() == "Consent of a subject"
        _checked(page, artifacts, "consent-form")
        _tab_to(page, "#subject")  # the form is reached from the keyboard, in order: id, pack, button
        page.keyboard.type(CONSENTING)
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.id") == "pack"
        assert page.get_by_label("Judged under the pack").input_value() == EU_PACK
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.textContent") == "Look up consent"
        with page.expect_navigation():
            page.keyboard.press("Enter")
        expect(page.locator("#result-heading")).to_be_in_viewport()
        verdicts = page.get_by_role("table", name=re.compile("^May recgov profile this subject now"))
        assert verdicts.get_by_role("row").filter(has_text="personalization").inner_text().split("\t")[1] == "may profile"
        assert page.get_by_text(pseudonym, exact=True).is_visible()
        assert page.get_by_label("Subject id").input_value() == ""  # not shown back
        _checked(page, artifacts, "consent-verdict")
    assert page.url == server.url + "/console/consent#result-heading"  # the answer scrolls to the verdicts; a fragment is never sent
    assert any("/console/consent" in url for url in urls) and not any(CONSENTING in url for url in urls)
    assert CONSENTING not in page.content()
    assert any("POST /console/consent" in line for line in lines) and not any(CONSENTING in line for line in lines)
    reads = [e for e in all_trail_events(server) if e["seq"] > head and e["action"] == "api.console.consent.read"]
    assert [(e["subject"], e["objects"]["policy"]) for e in reads] == [(pseudonym, EU_PACK)]
    assert_nowhere_in_the_trail(server, CONSENTING)


def test_a_reviewer_reads_the_art30_record_downloads_it_and_opens_the_disclosure_and_the_data_sets(page: Any, server: ConsoleServer, artifacts: Path) -> None:
    _sign_in(page, server, "auditor", artifacts)
    nav = page.get_by_role("navigation", name="Console")
    assert nav.get_by_role("link", name="Consent").count() == 0  # the lookup is the operator's, as in the API
    nav.get_by_role("link", name="Art. 30 record").click()
    assert page.get_by_role("heading", level=1).inner_text() == "Record of processing activities"
    with server.api("auditor") as api:
        from_api = api.get("/v1/records/processing", params={"pack": EU_PACK}).json()
    purposes = page.get_by_role("table", name="Each purpose of processing, with its lawful basis")
    assert purposes.get_by_role("rowheader").all_inner_texts() == [p["purpose"] for p in from_api["purposes"]]
    _checked(page, artifacts, "processing-record")
    with page.expect_download() as caught:
        page.get_by_role("link", name="Download the record as JSON").click()
    download = caught.value
    assert download.suggested_filename.startswith("processing-record-eu-gdpr-dsa-1.0.0-")
    document = json.loads(Path(download.path()).read_text())
    assert {k: v for k, v in document.items() if k != "generated_at"} == {k: v for k, v in from_api.items() if k != "generated_at"}
    nav.get_by_role("link", name="Art. 27 disclosure").click()
    page.get_by_label("Model version").select_option(MODEL_VERSION)
    page.get_by_role("button", name="Show the disclosure").click()
    page.wait_for_url(re.compile(f"model_version={MODEL_VERSION}"))
    assert page.get_by_role("heading", name="The options people have").is_visible()
    _checked(page, artifacts, "disclosure")
    nav.get_by_role("link", name="Data sets").click()
    assert page.get_by_role("heading", level=1).inner_text() == "Data sets an audit may use"
    assert page.get_by_role("table", name=re.compile("^Data sets models were trained on")).get_by_role("rowheader").all_inner_texts().count("console-synthetic") == 1
    _checked(page, artifacts, "data-sets")


def test_a_refused_role_gets_a_403_page_for_the_consent_and_the_record(page: Any, server: ConsoleServer, artifacts: Path) -> None:
    _sign_in(page, server, "auditor", artifacts)
    answer = page.goto(server.url + "/console/consent")
    assert answer.status == 403 and page.get_by_label("Subject id").count() == 0
    assert "scope 'operate'" in page.get_by_role("alert").inner_text()
    _checked(page, artifacts, "consent-refused")
    page.context.clear_cookies()
    _sign_in(page, server, "viewer", artifacts, start="/console/records/disclosure")
    _checked(page, artifacts, "disclosure-viewer")
    assert page.goto(server.url + "/console/records/processing").status == 403
    assert page.goto(server.url + "/console/datasets").status == 403
    _checked(page, artifacts, "processing-record-refused")


MARKUP = '"><img src="x" id="injected"><script id="injected-script">document.title="pwned"</script><b id="injected-b">'
"""What an attacker stores where a page shows it: an element of it in the rendered DOM is a stored XSS."""
SHORT_MARKUP = '"><img src="x" id="injected"><b id="injected-b">'
"""The same, short enough for a key's name (at most 100 characters)."""


def test_markup_stored_in_an_item_a_reason_a_note_or_a_key_name_is_shown_as_text(page: Any, server: ConsoleServer, artifacts: Path) -> None:
    """An item id, a report's reason, a case note (shown as its resolution) and a key's name are stored by whoever
    reports, reviews or is given a key; every page that shows them shows the text, never an element of it."""
    from governance.api.keys import create_key

    item = "xss-item" + MARKUP.replace("/", "")  # a path segment holds no slash
    with server.api("operator") as api:
        for n in range(3):
            assert api.post(f"/v1/items/{item}/reports", json={"reason": f"abusive {n}{MARKUP}"}).status_code == 201
    with server.api("admin") as api:
        case_id = next(c["case_id"] for c in api.post("/v1/escalations/evaluate", json={"pack": "baseline"}).json()["opened"] if c["item_id"] == item)
        moved = api.post(f"/v1/escalations/{case_id}", json={"status": "dismissed", "note": "note" + MARKUP})
        assert moved.status_code == 200, moved.text
    with server.store.session() as session:
        _, token = create_key(session, name="reviewer" + SHORT_MARKUP, role="admin")
    server.tokens["markup"] = token
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    _sign_in(page, server, "markup", artifacts)
    for path, shown in (
        ("/console/escalations", SHORT_MARKUP), ("/console/escalations?status=dismissed", MARKUP), ("/console/trail", SHORT_MARKUP),
        ("/console/audits", SHORT_MARKUP),
    ):  # fmt: skip
        page.goto(server.url + path)
        injected = page.evaluate("document.querySelectorAll('#injected, #injected-script, #injected-b').length")
        assert injected == 0 and page.title() != "pwned" and not dialogs, path
        assert shown in page.locator("body").inner_text(), path  # shown, as text
    page.goto(server.url + "/console/escalations?status=dismissed")
    row = page.locator(f"#case-{case_id}").inner_text()
    assert item in row and "note" + MARKUP in row
