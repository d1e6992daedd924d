"""The reviewer's console: server-rendered pages over the API's own data, for people who do not use curl.

``recgov serve`` serves it under ``/console`` beside the REST API. A reviewer
signs in with an API key (:mod:`.signin`) and gets a session cookie that holds
no token (:mod:`.sessions`); the pages (:mod:`.pages`) read and write through
the library functions the API's routes call, under the same scopes, and write
the same trail records; the record pages (:mod:`.records`: a model version's
lineage, subject requests, pack versions side by side) only read; so do the
compliance documents (:mod:`.documents`: the Art. 30 record, the Art. 27
disclosure, each with its JSON, and the data sets an audit may use,
:mod:`.datasets`), and the consent page (:mod:`.consent`: one subject's
consent judged under a pack, the id sent in a POST body and never shown back,
the read put on the trail). Every page
works without JavaScript: plain HTML forms, Jinja2 templates shipped in the
package (``templates/``), one stylesheet (``static/console.css``). The
console's routes are left out of the OpenAPI document: they are pages, not API
operations, and the role x endpoint matrix (:mod:`governance.api.access`)
stays the API's.
"""

from __future__ import annotations

from fastapi import APIRouter

from governance.api.console import consent, documents, pages, records, signin

__all__ = ["router"]

router = APIRouter()
router.include_router(signin.router)
router.include_router(pages.router)
router.include_router(records.router)
router.include_router(consent.router)
router.include_router(documents.router)
