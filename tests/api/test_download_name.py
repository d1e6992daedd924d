"""The ``Content-Disposition`` of every download: Latin-1 safe, with the exact name for clients that read RFC 5987."""

from __future__ import annotations

from urllib.parse import unquote

import pytest

from governance.api.download import attachment


def test_a_plain_name_is_sent_as_it_is() -> None:
    assert attachment("report-model-1.pdf") == 'attachment; filename="report-model-1.pdf"'


@pytest.mark.parametrize("name", ["report-модель.pdf", "report-推荐.pdf", 'report-a"b;c\\d.pdf', "report-é.pdf", "report-a b.pdf"])
def test_any_other_name_gets_an_ascii_fallback_and_its_exact_utf8_form(name: str) -> None:
    value = attachment(name)
    value.encode("latin-1")  # what the server must be able to send
    assert value.isascii()
    head, exact = value.split("; filename*=UTF-8''")
    assert head.startswith('attachment; filename="') and head.count('"') == 2
    assert unquote(exact) == name
