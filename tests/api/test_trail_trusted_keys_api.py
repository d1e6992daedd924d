"""GET /v1/trail/verify and POST /v1/trail/checkpoint trust the service's own keys, not the database's.

Hole pinned: a checkpoint signed by a key that a writer of the database added to ``signing_keys`` was counted as
verified by the API (``intact: true``), so a rewritten, re-hashed and re-signed trail passed the compliance review.
"""

from __future__ import annotations

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from audits import create_checkpoint
from audits.keys import SigningKey, key_id_of


def test_a_checkpoint_by_a_key_added_to_the_database_breaks_the_apis_verify(server, tmp_path) -> None:  # noqa: ANN001
    with server.client("admin") as client:
        assert client.post("/v1/trail/checkpoint").status_code == 201  # the service's own key signs
    with server.client("auditor") as client:
        clean = client.get("/v1/trail/verify").json()
    assert (clean["intact"], clean["trusted_keys"], clean["checkpoints_verified"]) == (True, "installation", 1)

    private = Ed25519PrivateKey.generate()  # made outside the service: nothing of it in the service's keys folder
    pem = private.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    outsider = SigningKey(private_key=private, key_id=key_id_of(private.public_key()), public_key_pem=pem, path=tmp_path / "k.pem")
    with server.store.session() as session:  # inserting a key and a checkpoint needs no guard switched off
        create_checkpoint(session, outsider)

    with server.client("auditor") as client:
        broken = client.get("/v1/trail/verify").json()
    assert (broken["intact"], broken["reason"], broken["trusted_keys"]) == (False, "untrusted_checkpoint", "installation")
    assert outsider.key_id in broken["detail"]
    with server.client("admin") as client:
        refused = client.post("/v1/trail/checkpoint")
    assert refused.status_code == 409 and refused.json()["type"].endswith("broken-trail"), refused.text
