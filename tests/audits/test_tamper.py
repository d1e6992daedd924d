"""Tampering around the triggers is caught by verification, at the exact first bad event.

Each case is what an attacker with database access could do: disable or drop
the triggers, then change a payload byte, change an actor, delete an event,
insert a forged event (with a valid hash of its own, renumbering the rest), or
swap two events. Every case runs in a transaction that is rolled back, so one
chain serves all of them.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable

import pytest
from sqlalchemy import Connection, text
from typer.testing import CliRunner

from audits import NewEvent, Store, append_many, create_checkpoint, load_signing_key, verify_trail
from audits.trail import GENESIS_HASH, hash_event
from governance.cli import app

N_EVENTS = 150
CASES_PER_KIND = 30
WORDS = ["alpha", "βeta", "gamma\n", 'δ"quote"', "emoji \U0001f600", "tab\t", "plain"]


def _fill(store: Store, n_events: int = N_EVENTS, seed: int = 7) -> None:
    rng = random.Random(seed)
    events = [
        NewEvent(
            actor=rng.choice(["svc:serving", "svc:train", "dpo@example.org", "gate"]),
            action=rng.choice(["decision.served", "model.recorded", "gate.passed", "subject.access"]),
            subject=rng.choice([None, f"{rng.getrandbits(256):064x}"]),
            objects={"model": f"m{rng.randrange(5)}", "decision": i},
            payload={
                "i": i,
                "items": [rng.randrange(1000) for _ in range(rng.randrange(1, 6))],
                "note": " ".join(rng.choices(WORDS, k=3)),
                "score": rng.random(),
                "nested": {"ok": rng.random() < 0.5, "none": None},
            },
        )
        for i in range(n_events)
    ]
    with store.session() as session:
        append_many(session, events, chunk_size=64)


def _bypass_triggers(connection: Connection) -> None:
    """What an attacker does first: switch the append-only triggers off (inside this transaction)."""
    if connection.dialect.name == "postgresql":
        connection.execute(text("ALTER TABLE trail_events DISABLE TRIGGER USER"))
        connection.execute(text("ALTER TABLE trail_head DISABLE TRIGGER USER"))
    else:
        for trigger in ("trail_events_no_update", "trail_events_no_delete", "trail_head_forward_only"):
            connection.execute(text(f"DROP TRIGGER {trigger}"))


def _row(connection: Connection, seq: int) -> dict:
    return dict(connection.execute(text("SELECT * FROM trail_events WHERE seq = :s"), {"s": seq}).mappings().one())


def _renumber(connection: Connection, where: str, expression: str, params: dict) -> None:
    # Two steps through negative numbers: the primary key is checked row by row.
    connection.execute(text(f"UPDATE trail_events SET seq = -seq WHERE {where}"), params)
    connection.execute(text(f"UPDATE trail_events SET seq = {expression} WHERE seq < 0"), params)


def change_payload_byte(connection: Connection, rng: random.Random) -> tuple[int, set[str]]:
    k = rng.randint(1, N_EVENTS)
    payload = _row(connection, k)["payload"]
    index = rng.randrange(len(payload))
    replacement = rng.choice([c for c in 'abcXYZ019{}[]":, ' if c != payload[index]])
    changed = payload[:index] + replacement + payload[index + 1 :]
    connection.execute(text("UPDATE trail_events SET payload = :p WHERE seq = :s"), {"p": changed, "s": k})
    return k, {"hash_mismatch", "malformed"}


def change_actor(connection: Connection, rng: random.Random) -> tuple[int, set[str]]:
    k = rng.randint(1, N_EVENTS)
    actor = _row(connection, k)["actor"]
    connection.execute(text("UPDATE trail_events SET actor = :a WHERE seq = :s"), {"a": actor + "x", "s": k})
    return k, {"hash_mismatch"}


def delete_event(connection: Connection, rng: random.Random) -> tuple[int, set[str]]:
    k = rng.randint(1, N_EVENTS)
    connection.execute(text("DELETE FROM trail_events WHERE seq = :s"), {"s": k})
    return k, {"truncated"} if k == N_EVENTS else {"gap"}


def insert_forged_event(connection: Connection, rng: random.Random) -> tuple[int, set[str]]:
    """A forged event with a valid hash, linked to its predecessor; later events renumbered."""
    k = rng.randint(1, N_EVENTS)
    prev = GENESIS_HASH if k == 1 else _row(connection, k - 1)["hash"]
    _renumber(connection, "seq >= :k", "-seq + 1", {"k": k})
    forged = {
        "seq": k,
        "time": "2026-01-01T00:00:00.000000Z",
        "actor": "gate",
        "action": "gate.passed",
        "subject": None,
        "objects": '{"model":"m0"}',
        "payload": '{"forged":true}',
        "prev_hash": prev,
    }
    forged["hash"] = hash_event(
        prev, k, forged["time"], forged["actor"], forged["action"], None, forged["objects"], forged["payload"]
    )
    connection.execute(
        text(
            "INSERT INTO trail_events (seq, time, actor, action, subject, objects, payload, prev_hash, hash) "
            "VALUES (:seq, :time, :actor, :action, :subject, :objects, :payload, :prev_hash, :hash)"
        ),
        forged,
    )
    return k + 1, {"reorder"}


def swap_events(connection: Connection, rng: random.Random) -> tuple[int, set[str]]:
    i, j = sorted(rng.sample(range(1, N_EVENTS + 1), 2))
    connection.execute(text("UPDATE trail_events SET seq = -1 WHERE seq = :i"), {"i": i})
    connection.execute(text("UPDATE trail_events SET seq = :i WHERE seq = :j"), {"i": i, "j": j})
    connection.execute(text("UPDATE trail_events SET seq = :j WHERE seq = -1"), {"j": j})
    return i, {"reorder"}


def rewrite_and_rehash_event(connection: Connection, rng: random.Random) -> tuple[int, set[str]]:
    """A stronger attacker also recomputes the changed event's own hash: the next link breaks."""
    k = rng.randint(1, N_EVENTS)
    row = _row(connection, k)
    payload = '{"rewritten":true}'
    digest = hash_event(
        row["prev_hash"], k, row["time"], row["actor"], row["action"], row["subject"], row["objects"], payload
    )
    connection.execute(
        text("UPDATE trail_events SET payload = :p, hash = :h WHERE seq = :s"), {"p": payload, "h": digest, "s": k}
    )
    return (k, {"head_mismatch"}) if k == N_EVENTS else (k + 1, {"bad_prev_link"})


MUTATIONS: dict[str, Callable[[Connection, random.Random], tuple[int, set[str]]]] = {
    "payload_byte": change_payload_byte,
    "actor": change_actor,
    "delete": delete_event,
    "insert_forged": insert_forged_event,
    "swap": swap_events,
    "rehash": rewrite_and_rehash_event,
}


@pytest.mark.parametrize("kind", sorted(MUTATIONS))
def test_every_mutation_is_caught_at_its_first_bad_event(store: Store, kind: str) -> None:
    _fill(store)
    rng = random.Random(f"tamper-{kind}")
    missed = []
    for case in range(CASES_PER_KIND):
        with store.engine.connect() as connection:
            transaction = connection.begin()
            _bypass_triggers(connection)
            expected_seq, reasons = MUTATIONS[kind](connection, rng)
            report = verify_trail(connection, batch_size=40)  # several batches per walk
            transaction.rollback()
        if report.intact or report.first_bad_seq != expected_seq or report.reason not in reasons:
            missed.append((case, expected_seq, reasons, report.first_bad_seq, report.reason, report.detail))
    assert missed == []
    with store.snapshot() as connection:
        assert verify_trail(connection).intact  # every case was rolled back


def test_a_consistent_rewrite_is_caught_by_the_signed_checkpoint(store: Store) -> None:
    """Rewriting from event 40 to the end with fresh hashes, head included: only the signature shows it."""
    _fill(store)
    with store.session() as session:
        checkpoint = create_checkpoint(session, load_signing_key())
    with store.engine.connect() as connection:
        transaction = connection.begin()
        _bypass_triggers(connection)
        prev = _row(connection, 39)["hash"]
        for seq in range(40, N_EVENTS + 1):
            row = _row(connection, seq)
            payload = row["payload"] if seq != 40 else '{"rewritten":true}'
            digest = hash_event(
                prev, seq, row["time"], row["actor"], row["action"], row["subject"], row["objects"], payload
            )
            connection.execute(
                text("UPDATE trail_events SET payload = :p, prev_hash = :v, hash = :h WHERE seq = :s"),
                {"p": payload, "v": prev, "h": digest, "s": seq},
            )
            prev = digest
        connection.execute(text("UPDATE trail_head SET hash = :h"), {"h": prev})
        report = verify_trail(connection)
        transaction.rollback()
    assert (report.intact, report.first_bad_seq, report.reason) == (False, checkpoint.seq, "checkpoint_mismatch")


@pytest.mark.parametrize(("kind", "seed"), [("actor", 3), ("delete", 5), ("swap", 11)])
def test_the_cli_reports_the_first_bad_event_and_exits_1(store: Store, db_url: str, kind: str, seed: int) -> None:
    _fill(store)
    with store.engine.connect() as connection:
        transaction = connection.begin()
        _bypass_triggers(connection)
        expected_seq, _ = MUTATIONS[kind](connection, random.Random(seed))
        transaction.commit()
    runner = CliRunner()
    result = runner.invoke(app, ["trail", "verify", "--database-url", db_url])
    assert result.exit_code == 1, result.output
    assert f"trail BROKEN at seq {expected_seq}:" in result.output
    result = runner.invoke(app, ["trail", "verify", "--database-url", db_url, "--json"])
    assert result.exit_code == 1
    document = json.loads(result.stdout)
    assert (document["intact"], document["first_bad_seq"]) == (False, expected_seq)


def test_the_cli_says_intact_and_exits_0(store: Store, db_url: str) -> None:
    _fill(store, n_events=20)
    result = CliRunner().invoke(app, ["trail", "verify", "--database-url", db_url])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("trail intact: 20 events up to the head (seq 20")
