"""Request and response bodies of the REST API (separate from the SQLAlchemy models).

One module per resource sits beside this one (``governance.api.schemas.<resource>``);
the shared field patterns and the bodies used by more than one route live here. Routes
declare no body models of their own.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any

from pydantic import AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field

from governance.api.schemas.health import Health
from governance.api.schemas.packs import PackDiff, PackList, PackPublic, PackRef, PackStamp, PackStored, PackValidation

__all__ = [
    "IDENTIFIER",
    "INT4_MAX",
    "AwareMoment",
    "Count",
    "Moment",
    "REQUESTED_SUBJECT",
    "TEXT",
    "ConsentCreate",
    "ConsentPublic",
    "ConsentSignals",
    "GovernedList",
    "Health",
    "PackDiff",
    "PackList",
    "PackPublic",
    "PackStored",
    "PackValidation",
    "ProblemDetail",
    "RecommendationCreate",
    "ServedItem",
]


IDENTIFIER = r"^[^\x00-\x1f\x7f\s](?:[^\x00-\x1f\x7f]*[^\x00-\x1f\x7f\s])?$"
"""Pattern of ids and names (subjects, items, purposes, packs, model versions): no control character, not blank,
no whitespace at either end (event logs and imports read ids stripped, so a padded id would name no one: a
withdrawal or an erasure recorded under it would reach nobody; :func:`audits.subjects.subject_id_problem`).

PostgreSQL text cannot hold NUL at all; the other control characters have no
business in an id, and would be hard to see in a log or a report."""
REQUESTED_SUBJECT = r"^[^\x00-\x1f\x7f]*[^\x00-\x1f\x7f\s][^\x00-\x1f\x7f]*$"
"""Pattern of the subject of an access or erasure request: :data:`IDENTIFIER`, but whitespace at either end passes
the schema; such a request is answered only for a subject recorded under exactly that id (one stored before such
ids were refused must stay reachable), else refused (:func:`governance.privacy.common.requested_subject`)."""
TEXT = r"^[^\x00]*[^\x00\s][^\x00]*$"
"""Pattern of free text (a reason, a note): anything but NUL, which PostgreSQL text cannot hold, and not blank
(the store refuses a reason or note of whitespace alone)."""
MAX_TC_STRING = 8192
"""Characters of a TC string (one with every vendor range and publisher restriction of the Global Vendor List fits)."""
INT4_MAX = 2**31 - 1
"""The largest row id (PostgreSQL ``integer``): a larger id in a path is a 422, never a database error."""

_ISO_DATE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]")
NOT_A_DATE_TIME = "an ISO 8601 date and time is expected (e.g. 2026-03-01T09:30:00Z), not a number nor a bare date"


def _date_time_only(value: Any) -> Any:
    """Refuse what pydantic would read as a time but ``date-time`` forbids: numbers (Unix times), bare dates."""
    if isinstance(value, (int, float)) or (isinstance(value, str) and not _ISO_DATE_TIME.match(value)):
        raise ValueError(NOT_A_DATE_TIME)
    return value


def _a_json_number(value: Any) -> Any:
    """Refuse what pydantic would read as a number but JSON Schema's ``integer`` forbids: booleans and text."""
    if isinstance(value, (bool, str, bytes)):
        raise ValueError("a JSON number is expected, not a boolean nor a string")
    return value


Count = Annotated[int, BeforeValidator(_a_json_number)]
"""An integer as the document declares it (``type: integer``): 3 and 3.0, never true nor "3"."""
Moment = Annotated[datetime, BeforeValidator(_date_time_only)]
"""A time as the document declares it (``format: date-time``): ISO 8601 text only."""
AwareMoment = Annotated[AwareDatetime, BeforeValidator(_date_time_only)]
"""A :data:`Moment` that must carry its offset."""


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ProblemDetail(BaseModel):
    """An error, as RFC 9457 problem details (``application/problem+json``)."""

    type: str = Field(description="A URI naming the kind of problem, under https://recgov.dev/problems/.")
    title: str = Field(description="A short summary of the kind of problem.")
    status: int = Field(description="The HTTP status code.")
    detail: str = Field(description="What went wrong in this request, and what to do.")
    instance: str = Field(description="The request path.")
    errors: list[dict[str, Any]] | None = Field(
        None, description="Located issues (422), or the gate's reasons (409 on promotion)."
    )


# Bodies of /v1/consent, kept importable from here (they moved to their resource's module).
from governance.api.schemas.consent import ConsentCreate, ConsentPublic  # noqa: E402

# Bodies of /v1/recommendations, kept importable from here (they moved to their resource's module).
from governance.api.schemas.recommendations import ConsentSignals, GovernedList, RecommendationCreate, ServedItem  # noqa: E402
