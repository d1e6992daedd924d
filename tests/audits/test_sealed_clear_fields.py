"""A v2 decision token binds the fields its record keeps in the clear; v1 tokens, written before, still open."""

from __future__ import annotations

import os

import orjson

from audits.canonical import canonical_json
from audits.sealing import SEALED, open_decision, seal_decision, token_version

KEY = os.urandom(32)
WHO = "ab" * 32
CLEAR = {"decided_at": "2024-07-02T00:00:00.000000Z", "mode": "personalized", "pack_name": "eu-gdpr-dsa",
         "pack_version": "1.0.0", "pack_hash": "cd" * 32, "model_version": "als-1"}  # fmt: skip
SLATE = {"items": ["i1", "i2"], "scores": [0.9, 0.5], "tags": [[], []]}
CONTEXT = {"consent": "batch", "gpc": False, "batch": "run-1"}


def _sealed(clear: dict | None) -> tuple[dict, dict]:
    slate, context = seal_decision(KEY, "d-1", WHO, canonical_json(SLATE), canonical_json(CONTEXT), clear=clear)
    return orjson.loads(slate), orjson.loads(context)


def test_a_v2_token_opens_only_with_the_fields_it_was_sealed_with() -> None:
    slate, context = _sealed(CLEAR)
    assert token_version(slate[SEALED]) == 2 and context == {}
    assert open_decision(KEY, "d-1", WHO, slate, context, CLEAR) == (SLATE, CONTEXT)
    for name, value in (("model_version", "als-forged"), ("decided_at", "2020-01-01T00:00:00.000000Z"), ("mode", "fallback")):
        assert open_decision(KEY, "d-1", WHO, slate, context, {**CLEAR, name: value}) is None, name
    assert open_decision(KEY, "d-1", WHO, slate, context) is None  # a reader that gives no fields opens nothing
    assert open_decision(KEY, "d-1", WHO, slate, {"served": False}, CLEAR) is None  # nor with another clear context
    downgraded = {SEALED: "v1:" + slate[SEALED][3:]}
    assert open_decision(KEY, "d-1", WHO, downgraded, context, CLEAR) is None  # the domains differ


def test_a_v1_token_still_opens_with_or_without_the_fields() -> None:
    slate, context = _sealed(None)
    assert token_version(slate[SEALED]) == 1
    assert open_decision(KEY, "d-1", WHO, slate, context) == (SLATE, CONTEXT)
    assert open_decision(KEY, "d-1", WHO, slate, context, CLEAR) == (SLATE, CONTEXT)
    assert open_decision(KEY, "d-2", WHO, slate, context) is None
