"""``recgov harm``: harmful-content flags, user reports, escalation rules and the case workflow.

What a trust-and-safety reviewer runs. ``evaluate --every SECONDS`` applies the
pack's rules on a schedule (a long-running watcher, stopped with Ctrl-C or after
``--times`` rounds), so that cases open without anyone asking.

Exit codes: 0 done, 2 bad input (unknown case or pack, a harm category the pack
does not know, a move the workflow does not allow, a confidence outside 0..1, an
item id no catalogue holds but spelt like one that does: "did you mean i00573?",
``--new-item`` on an id a catalogue holds); ``flags`` exits 1 when a listed flag's
item id is in no catalogue but spelt like one that is (it keeps nothing out of any list).

``flag``, ``report`` and ``block`` say whether the item is in the catalogue recgov
knows (the items of the recorded, not retired, models and of the availability
table): ``in_catalogue`` in JSON, and in words when it is not (no list holds it
now). ``--new-item`` says the id names an item no catalogue holds yet although one
holds a near spelling (``I9`` beside ``i9``): the write goes ahead, and its trail
event records the claim and the spellings it overrode.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from governance.cli._common import EXIT_FINDING, checked_subject_id, console, emit_json, fail, opened_store, user_errors
from governance.cli.core import DatabaseOpt, JsonOpt, print_rows
from governance.cli._common import load_or_fail

__all__ = ["register"]

harm_app = typer.Typer(help="Harmful content: flags, reports, escalation rules and cases.", no_args_is_help=True)
NewItemOpt = Annotated[
    bool,
    typer.Option(
        "--new-item",
        help="ITEM names an item no catalogue holds yet, though one holds a near spelling (I9 beside i9): write it "
        "anyway; the trail event records this claim and the spellings it overrode. Refused for an id a catalogue holds.",
    ),
]
PackOpt = Annotated[
    str,
    typer.Option("--pack", "-p", help="Policy pack whose harmful-content rules and harm categories apply (file, shipped name, or stored NAME@VERSION)."),
]
ItemArg = Annotated[str, typer.Argument(help="The item, by the id the catalogue knows it by.")]
ReasonOpt = Annotated[str, typer.Option("--reason", help="Why, in words: what the user said, or why the item is blocked (stored on the trail; no personal data, please).")]
NoteOpt = Annotated[
    str | None,
    typer.Option("--note", help="The reviewer's note (stored on the trail; no personal data, please): a case's resolution when it closes, why a flag is switched.", show_default=False),
]


@contextmanager
def _session(database_url: str | None) -> Iterator[Any]:
    """A session of the store, its expected failures one clear line and exit 2 (:func:`user_errors`)."""
    with user_errors(), opened_store(database_url) as store, store.session() as session:
        yield session


def _emitted(result: dict[str, Any], json_output: bool) -> bool:
    """Print ``result`` as JSON under ``--json`` (True: nothing more to print)."""
    if json_output:
        emit_json(result)
    return json_output


@harm_app.command("flag")
def flag_command(
    item: ItemArg,
    category: Annotated[str, typer.Option("--category", help="Harm category, one the pack knows (harmful_content.categories or blocked_categories), e.g. self-harm or violence.")],
    confidence: Annotated[float, typer.Option("--confidence", help="How sure the source is, from 0 to 1.")],
    source: Annotated[str, typer.Option("--source", help="metadata, api, model or report.")] = "api",
    pack: PackOpt = "baseline",
    new_item: NewItemOpt = False,
    database_url: DatabaseOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Flag ITEM as possibly harmful (on the trail) and say what the flag does under the pack.

    A category the pack does not know is refused (exit 2), naming the known ones; so is an ITEM no catalogue
    holds but spelt like one that does (case, leading zeros), naming it. An ITEM no catalogue holds at all is
    flagged, and the answer says that no list holds it now.
    """
    from audits.catalogue import check_item
    from governance.escalation import flag_under_pack

    loaded = load_or_fail(pack, json_output=json_output)
    with _session(database_url) as session:
        row, effect = flag_under_pack(session, loaded.pack, item_id=item, category=category, confidence=confidence, source=source, new_item=new_item)
        found = check_item(session, row.item_id, new_item=new_item)
        result = {
            "flag_id": row.id, "item_id": row.item_id, "category": row.category, "confidence": row.confidence,
            "source": row.source, "in_catalogue": found.in_catalogue, "catalogue": found.describe(),
            "effect": effect, "new_item": new_item, "near": list(found.near), **loaded.stamp(),
        }  # fmt: skip
    if _emitted(result, json_output):
        return
    console.print(f"flag {result['flag_id']}: {item} {category} ({confidence:.2f}, {source}): {effect}", highlight=False)


@harm_app.command("report")
def report_command(
    item: ItemArg,
    reason: ReasonOpt,
    reporter: Annotated[str | None, typer.Option("--reporter", help="The reporting user (stored only as a pseudonym).", show_default=False, callback=checked_subject_id)] = None,
    new_item: NewItemOpt = False,
    database_url: DatabaseOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Record a user's report of ITEM; enough reports open a case at the next 'evaluate'.

    An ITEM no catalogue holds but spelt like one that does is refused (exit 2), naming it; one no catalogue
    holds at all is recorded, and the answer says so.
    """
    from audits.catalogue import check_item
    from audits.harm import report_item

    with _session(database_url) as session:
        row = report_item(session, item_id=item, reason=reason, reporter_id=reporter, new_item=new_item)
        found = check_item(session, row.item_id, new_item=new_item)
        result = {
            "report_id": row.id, "item_id": row.item_id, "in_catalogue": found.in_catalogue,
            "catalogue": found.describe(), "new_item": new_item, "near": list(found.near),
        }  # fmt: skip
    if _emitted(result, json_output):
        return
    unserved = "" if found.in_catalogue else f" (no list holds the item now: it is {found.describe()})"
    console.print(f"report {result['report_id']} on {item} recorded{unserved}", highlight=False)


@harm_app.command("evaluate")
def evaluate_command(
    pack: PackOpt = "baseline",
    every: Annotated[float | None, typer.Option("--every", min=1.0, help="Run again every SECONDS (a watcher; Ctrl-C stops it).", show_default=False)] = None,
    times: Annotated[int | None, typer.Option("--times", min=1, help="With --every: stop after this many rounds.", show_default=False)] = None,
    database_url: DatabaseOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Apply the pack's harmful-content rules to flags, reports and served lists; print the cases opened.

    With --every, one line per round (one JSON document per round with --json).
    """
    from governance.escalation import evaluate_escalations

    if times is not None and every is None:
        raise fail("--times needs --every")
    loaded = load_or_fail(pack, json_output=json_output)
    rounds = 0
    with user_errors(), opened_store(database_url) as store:
        try:
            while True:
                with store.session() as session:
                    opened = evaluate_escalations(session, loaded.pack)
                rounds += 1
                at = datetime.now(UTC).isoformat(timespec="seconds")
                if json_output:
                    emit_json({"at": at, "round": rounds, "opened": opened, **loaded.stamp()})
                elif opened:
                    for case in opened:
                        console.print(f"{at} case {case['case_id']} opened on {case['item_id']} ({case['rule']})", highlight=False)
                else:
                    console.print(f"{at} no new case", highlight=False)
                if every is None or (times is not None and rounds >= times):
                    break
                time.sleep(every)
        except KeyboardInterrupt:
            console.print(f"stopped after {rounds} round(s)")


@harm_app.command("cases")
def cases_command(
    status: Annotated[str | None, typer.Option("--status", help="open, triaged, resolved or dismissed.", show_default=False)] = None,
    overdue: Annotated[bool, typer.Option("--overdue", help="Only cases past their SLA now.")] = False,
    database_url: DatabaseOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Escalation cases by due time."""
    from audits.harm import list_cases

    with _session(database_url) as session:
        cases = list_cases(session, status=status, overdue_at=datetime.now(UTC) if overdue else None)
    if _emitted({"cases": cases}, json_output):
        return
    if not cases:
        console.print("no case")
        return
    print_rows(
        [{"case": c["id"], "item": c["item_id"], "rule": c["rule_id"], "severity": c["severity"], "status": c["status"], "due": str(c["sla_due"])} for c in cases]
    )


@harm_app.command("case")
def case_command(
    case_id: Annotated[int, typer.Argument(help="The case to move.")],
    to: Annotated[str, typer.Option("--to", help="triaged, resolved or dismissed.")],
    action: Annotated[str | None, typer.Option("--action", help="block or unblock the case's item, now.", show_default=False)] = None,
    note: NoteOpt = None,
    database_url: DatabaseOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Move a case through the workflow; a block or unblock takes effect at the next request.

    An unblock says what keeps the item out of lists all the same (an active flag under a pack that blocks its
    category, another case under review), as 'block --unblock' does.
    """
    from audits._common import actor_name
    from audits.harm import other_holds, transition_case

    with _session(database_url) as session:
        row = transition_case(session, case_id, status=to, action=action, note=note, actor=actor_name(None))
        result = {
            "case_id": row.id, "item_id": row.item_id, "status": row.status, "action": action,
            "still_held": other_holds(session, row.item_id) if action == "unblock" else [],
        }  # fmt: skip
    if _emitted(result, json_output):
        return
    console.print(f"case {case_id}: {to}" + (f", item {result['item_id']} {action}ed" if action else ""), highlight=False)
    for hold in result["still_held"]:
        console.print(f"  it stays out of lists meanwhile: {hold}", highlight=False, soft_wrap=True)


@harm_app.command("block")
def block_command(
    item: ItemArg,
    reason: ReasonOpt,
    unblock: Annotated[bool, typer.Option("--unblock", help="Lift the item's block instead.")] = False,
    new_item: NewItemOpt = False,
    database_url: DatabaseOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Block ITEM now (or lift its block with --unblock), without a case: it is out of every list from the next request.

    As for 'flag', an ITEM no catalogue holds but spelt like one that does is refused (exit 2), naming it: lists
    are filtered by the exact id, so the block would keep nothing out. One no catalogue holds at all is blocked,
    and the answer says that no list holds it now.
    """
    from audits.catalogue import look_up_item
    from audits.harm import block_item, other_holds

    with _session(database_url) as session:
        row = block_item(session, item_id=item, blocked=not unblock, reason=reason, new_item=new_item)
        found = look_up_item(session, row.item_id)  # the block checked it first
        result = {
            "item_id": row.item_id, "blocked": row.blocked, "reason": row.reason, "trail_seq": row.trail_seq,
            "in_catalogue": found.in_catalogue, "catalogue": found.describe(), "new_item": new_item, "near": list(found.near),
            "still_held": [] if row.blocked else other_holds(session, row.item_id),
        }  # fmt: skip
    if _emitted(result, json_output):
        return
    unserved = "" if found.in_catalogue else f" (no list holds the item now: it is {found.describe()})"
    console.print(f"item {result['item_id']} {'blocked' if row.blocked else 'unblocked'}{unserved}", highlight=False, soft_wrap=True)
    for hold in result["still_held"]:
        console.print(f"  it stays out of lists meanwhile: {hold}", highlight=False, soft_wrap=True)


@harm_app.command("flags")
def flags_command(
    every: Annotated[bool, typer.Option("--all", help="Inactive flags too.")] = False,
    database_url: DatabaseOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Stored flags, oldest first, each marked with whether the catalogue recgov knows holds its item.

    A flag stored before item ids were checked, under a spelling no catalogue holds but near one that does
    (I00573 for i00573), keeps nothing out of any list: it is marked with the catalogue's spelling, and the
    command exits 1 while such a flag is active (flag the catalogue's id: recgov harm flag ID ..., then switch
    the misspelt flag off: recgov harm unflag FLAG).
    """
    from governance.escalation import flag_listing

    with _session(database_url) as session:
        flags = flag_listing(session, active_only=not every)
    misspelt = [f["id"] for f in flags if f["near"] and not f["claimed_new"] and f["active"]]
    if json_output:
        emit_json({"flags": flags, "misspelt": misspelt})
    elif not flags:
        console.print("no flag")
    else:
        print_rows(
            [
                {
                    "flag": str(f["id"]), "item": f["item_id"], "category": f["category"], "confidence": f"{f['confidence']:.2f}",
                    "active": "yes" if f["active"] else "no",
                    "catalogue": "yes" if f["in_catalogue"] else (
                        f"no: claimed a new item (beside {' or '.join(f['near'][:3])})" if f["claimed_new"]
                        else f"NO: did you mean {' or '.join(f['near'][:3])}?" if f["near"] else "no (no list holds it now)"
                    ),
                }
                for f in flags
            ],
            title=f"{len(flags)} flag(s)" + (f", {len(misspelt)} on an id no catalogue holds but spelt like one that does: they keep nothing out of any list" if misspelt else ""),
        )  # fmt: skip
    if misspelt:
        raise typer.Exit(code=EXIT_FINDING)


@harm_app.command("unflag")
def unflag_command(
    flag_id: Annotated[int, typer.Argument(help="The flag to switch off (see recgov harm flags).", min=1)],
    note: NoteOpt = None,
    again: Annotated[bool, typer.Option("--again", help="Switch the flag on again instead.")] = False,
    database_url: DatabaseOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Switch a flag off (or on again with --again), on the trail; what it kept out of lists is served again at the next request."""
    from audits.harm import set_flag_active

    with _session(database_url) as session:
        row = set_flag_active(session, flag_id, active=again, note=note)
        result = {"flag_id": row.id, "item_id": row.item_id, "category": row.category, "active": row.active, "trail_seq": row.trail_seq}
    if _emitted(result, json_output):
        return
    console.print(f"flag {row.id} on {result['item_id']} ({result['category']}): {'on' if again else 'off'}", highlight=False)


def register(app: typer.Typer) -> None:
    """Add ``recgov harm flag|report|block|flags|unflag|evaluate|cases|case``."""
    app.add_typer(harm_app, name="harm")
