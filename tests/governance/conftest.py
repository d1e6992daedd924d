"""Fixtures shared by the governance tests.

``consented_store`` is where the tests of the regulator's package (the DSA audit
export, the report's accountability sections, the researchers' package) start:
a store of its own, consent imported for the 300 synthetic users under the EU
pack (five in six granted, every sixth denied, from a CMP export), and a way to
run the CLI and train models on it (:class:`report_store.ConsentedStore`). Each
module builds on it what it reads back.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from report_store import CONSENTED_USERS, ConsentedStore, consent_denied
from typer.testing import CliRunner


@pytest.fixture(scope="module")
def consented_store(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[ConsentedStore]:
    """The module's consented store (see the module doc); the environment names it until the module ends."""
    root = tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_"))
    url = f"sqlite:///{root / 'recgov.db'}"
    with pytest.MonkeyPatch.context() as env:
        env.setenv("RECGOV_HOME", str(root / "home"))
        for name in ("RECGOV_SIGNING_KEY_PATH", "RECGOV_INSTALLATION_KEY", "RECGOV_ACTOR"):
            env.delenv(name, raising=False)
        env.setenv("RECGOV_DATABASE_URL", url)
        store = ConsentedStore(root=root, url=url, runner=CliRunner())
        consents = root / "consent.csv"
        consents.write_text(
            "subject,purpose,status,time,basis,source,evidence_origin\n"
            + "".join(
                f"u{u:06d},personalization,{'denied' if consent_denied(u) else 'granted'},2026-01-01T00:00:00Z,consent,import,crm.csv\n"
                for u in range(CONSENTED_USERS)
            )
        )
        imported = json.loads(store.cli("consent", "import", str(consents), "--pack", "eu-gdpr-dsa", "--json"))
        assert imported["added"] == CONSENTED_USERS and imported["invalid"] == 0, imported
        yield store
