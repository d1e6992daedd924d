"""What a problem document may show, and to whom: no raw subject id to anyone; server paths and data values to the people running the service.

Every problem document goes through :func:`disclosed` before it is sent
(:func:`governance.api.errors.problem_response`):

* **subject ids**, to every caller. The ids a request carries (a path
  parameter such as ``/v1/subjects/{subject_id}/...`` or
  ``/v1/consent/{subject}``, matched by template even when the rest of the path
  matches no route, and the ``subject`` of a JSON body) are replaced by
  ``<subject>`` wherever they appear: in ``detail``, in ``errors`` and in
  ``instance``, which names the route template in their place.
* **server paths and values read from data files**, unless the calling key's
  role is in :data:`DISCLOSING_ROLES`. An absolute path under ``RECGOV_HOME``
  is shown relative to it (``$RECGOV_HOME/data/events.csv``), any other
  absolute path of the server as ``<server path>``; a quoted value after a
  data-file location (``events.csv line 7: value 'x' is not a number``) as
  ``'<value>'``. The location stays: the caller still learns what to fix.

The calling key's role is left on ``request.state`` by the scope check
(:func:`governance.api.deps.require`); a request refused before its key was
read (401) is shown the redacted form.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any

import orjson
from starlette.requests import Request

__all__ = [
    "ACCESS_LOGGER", "CLIENT_MODES", "DISCLOSING_ROLES", "PATH_MASK", "SUBJECT_MASK", "VALUE_MASK", "SubjectPathsInLogs", "client_pseudonym", "disclosed",
    "lineage_shown_to", "mask_access_log", "shown_to", "subject_path_patterns",
]

DISCLOSING_ROLES = frozenset({"admin", "operator"})
"""Roles shown server paths and data values: they run the service and its data."""
SUBJECT_PARAMS = ("subject_id", "subject")
SUBJECT_MASK = "<subject>"
PATH_MASK = "<server path>"
VALUE_MASK = "'<value>'"
ROLE_STATE = "recgov_key_role"
"""The ``request.state`` attribute holding the calling key's role."""

# A quoted literal after a data-file location ("... line 7: value 'x' is not ..."), up to the end of that clause.
_LOCATED_VALUE = re.compile(r"""((?:line|row) \d+[^'"\n]*?)('(?:[^'\\\n]|\\.)*'|"(?:[^"\\\n]|\\.)*")""")


@lru_cache(maxsize=1)
def _server_path() -> re.Pattern[str]:
    """Absolute paths whose first component is a directory at the root of this server (not a URL path)."""
    try:
        roots = sorted((name for name in os.listdir("/") if os.path.isdir("/" + name)), key=len, reverse=True)
    except OSError:
        roots = ["root", "home", "tmp", "var", "srv", "opt", "usr", "etc", "work", "mnt", "data"]
    alternatives = "|".join(re.escape(r) for r in roots)
    return re.compile(rf"(?<![\w.~$/])/(?:{alternatives})(?:/[^\s'\",;:()\[\]{{}}]*)?(?![\w])")


def subject_path_patterns(paths: Iterable[str]) -> list[re.Pattern[str]]:
    """For each path template with a subject parameter, a pattern matching a path up to that parameter.

    >>> [p.pattern for p in subject_path_patterns(["/v1/consent/{subject}", "/v1/packs"])]
    ['^/v1/consent/(?P<subject>[^/]+)(?=/|$)']
    """
    patterns = []
    for template in paths:
        segments = template.split("/")
        for i, segment in enumerate(segments):
            if segment in {"{" + p + "}" for p in SUBJECT_PARAMS}:
                head = "/".join("[^/]+" if s.startswith("{") else re.escape(s) for s in segments[:i])
                patterns.append(re.compile(f"^{head}/(?P<subject>[^/]+)(?=/|$)"))
                break
    return patterns


def _route_paths(routes: Iterable[Any], prefix: str = "") -> Iterator[str]:
    """The path templates of ``routes``, including those of included routers (a walk of objects, no OpenAPI build)."""
    for route in routes:
        included = getattr(route, "original_router", None)
        if included is not None:
            context = getattr(route, "include_context", None)
            yield from _route_paths(included.routes, prefix + getattr(context, "prefix", ""))
        elif isinstance(getattr(route, "path", None), str):
            yield prefix + route.path


def _patterns(request: Request) -> list[re.Pattern[str]]:
    """The app's subject path patterns, built once from its routes (microseconds: never a stall of the event loop)."""
    app = request.scope.get("app")
    if app is None:
        return []
    cached = getattr(app.state, "recgov_subject_paths", None)
    if cached is None:
        cached = subject_path_patterns(_route_paths(getattr(app, "routes", ())))
        app.state.recgov_subject_paths = cached
    return cached


def _body_subject(request: Request, body: Any) -> str | None:
    """The ``subject`` of the request's JSON body: the one given, else the body the route already read."""
    if body is None:
        raw = request.__dict__.get("_body")  # read by the route: cached on this request, never read again here
        if not raw:
            return None
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return None
    subject = body.get("subject") if isinstance(body, dict) else None
    return subject if isinstance(subject, str) and subject else None


def _masked(text: str, ids: list[str]) -> str:
    for subject in ids:
        text = re.sub(rf"(?<![\w-]){re.escape(subject)}(?![\w-])", SUBJECT_MASK, text)
    return text


def _server_details_hidden(text: str, home: str | None) -> str:
    def path(match: re.Match[str]) -> str:
        found = match.group(0)
        if home and (found == home or found.startswith(home + "/")):
            return "$RECGOV_HOME" + found[len(home) :]
        return PATH_MASK

    text = _server_path().sub(path, text)
    return _LOCATED_VALUE.sub(lambda m: m.group(1) + VALUE_MASK, text)


def shown_to(role: str | None, text: str | None, home: Path | str | None) -> str | None:
    """``text`` (an error read from the store, say) as a key of ``role`` may see it: server details hidden unless disclosing.

    >>> shown_to("viewer", "/srv/recgov/data/a.csv line 2: value 'x' is not a number", "/srv/recgov")
    "$RECGOV_HOME/data/a.csv line 2: value '<value>' is not a number"
    """
    if text is None or role in DISCLOSING_ROLES:
        return text
    return _server_details_hidden(text, None if home is None else str(Path(home).resolve()))


LINEAGE_PATHS = (("model_version", "artifact_location"), ("dataset_version", "source"))
"""The fields of a lineage document (:func:`audits.lineage.lineage_of`, and the report's document built on it) that hold server paths."""


def lineage_shown_to(role: str | None, document: dict[str, Any], home: Path | str | None) -> dict[str, Any]:
    """A lineage document as a key of ``role`` may see it: the model file's location and a file data set's source
    shown as ``GET /v1/datasets`` shows sources (relative to ``$RECGOV_HOME``, or ``<server path>``) unless disclosing.

    >>> doc = {"model_version": {"artifact_location": "/srv/recgov/models/a.npz"}, "dataset_version": {"source": "/mnt/x.csv"}}
    >>> lineage_shown_to("viewer", doc, "/srv/recgov")
    {'model_version': {'artifact_location': '$RECGOV_HOME/models/a.npz'}, 'dataset_version': {'source': '<server path>'}}
    """
    if role in DISCLOSING_ROLES:
        return document
    out = dict(document)
    for part, field in LINEAGE_PATHS:
        record = out.get(part)
        if isinstance(record, dict) and isinstance(record.get(field), str):
            out[part] = {**record, field: shown_to(role, record[field], home)}
    return out


def _walk(value: Any, change: Any) -> Any:
    if isinstance(value, str):
        return change(value)
    if isinstance(value, dict):
        return {k: _walk(v, change) for k, v in value.items()}
    if isinstance(value, list):
        return [_walk(v, change) for v in value]
    return value


def _home(request: Request) -> str | None:
    app = request.scope.get("app")
    settings = getattr(getattr(app, "state", None), "settings", None)
    home = getattr(settings, "home", None)
    if home is None:
        return None
    return str(Path(home).resolve())


def disclosed(request: Request, problem: dict[str, Any], *, body: Any = None) -> dict[str, Any]:
    """``problem`` as ``request``'s caller may see it (see the module doc).

    ``body``: the request's parsed JSON body when the caller has it (a
    validation error carries it); otherwise the body the route read is used.
    """
    path = str(problem.get("instance", ""))
    ids = []
    for pattern in _patterns(request):
        match = pattern.match(path)
        if match:
            ids.append(match.group("subject"))
            path = path[: match.start("subject")] + "{subject}" + path[match.end("subject") :]
    ids += [str(v) for k, v in request.scope.get("path_params", {}).items() if k in SUBJECT_PARAMS]
    subject = _body_subject(request, body)
    if subject is not None:
        ids.append(subject)
    ids = sorted(set(ids), key=len, reverse=True)  # the longest first: an id inside another is masked with it
    out = {**problem, "instance": path}
    if ids:
        out = {k: (v if k in ("type", "title", "status", "instance") else _walk(v, lambda s: _masked(s, ids))) for k, v in out.items()}
    if getattr(request.state, ROLE_STATE, None) not in DISCLOSING_ROLES:
        home = _home(request)
        out = {k: (v if k in ("type", "title", "status") else _walk(v, lambda s: _server_details_hidden(s, home))) for k, v in out.items()}
    return out


ACCESS_LOGGER = "uvicorn.access"
"""The logger of uvicorn's access log: ``'%s - "%s %s HTTP/%s" %d'`` with the request path third."""


def _template_path(path: str, patterns: list[re.Pattern[str]]) -> str:
    """``path`` with the subject id a subject route's template names replaced by ``{subject}``."""
    for pattern in patterns:
        match = pattern.match(path)
        if match:
            path = path[: match.start("subject")] + "{subject}" + path[match.end("subject") :]
    return path


CLIENT_MODES = ("pseudonymize", "drop", "keep")
"""What the access log shows of the client's address (``RECGOV_ACCESS_LOG_CLIENTS``)."""
_CLIENT_KEY = os.urandom(32)
"""The key of the access log's client pseudonyms: drawn per process and kept nowhere, so a pseudonym links one
client's requests to each other within a server's lifetime and to nobody (an IPv4 address hashed without a key
is found back by trying them all)."""


def client_pseudonym(client_addr: str) -> str:
    """``client-`` and a keyed hash of the address the access log would show (``host:port``; the port is left out:
    ephemeral, it would split one client into many)."""
    import hashlib
    import hmac

    host = client_addr.rsplit(":", 1)[0] if ":" in client_addr else client_addr  # uvicorn writes host:port, IPv6 too
    return "client-" + hmac.new(_CLIENT_KEY, host.encode("utf-8", "replace"), hashlib.sha256).hexdigest()[:12]


class SubjectPathsInLogs(logging.Filter):
    """Masks the subject id in the path of an access-log line (``/v1/subjects/{subject}/export``), and the client's
    IP address (personal data, GDPR Recital 30) as ``clients`` says: ``pseudonymize`` (default: a keyed hash,
    :func:`client_pseudonym`), ``drop`` (``-``) or ``keep``.

    ``recgov serve`` runs uvicorn without an access log unless asked (``--access-log``); a deployment that runs
    the app its own way (``uvicorn --factory governance.api.app:app_from_env``, gunicorn's uvicorn workers) keeps
    uvicorn's, and the routes that take the subject in their path (deprecated, still served) would write the raw
    id to it, and every line the client's address.
    """

    def __init__(self, patterns: list[re.Pattern[str]], clients: str = "pseudonymize") -> None:
        super().__init__()
        self.patterns = patterns
        self.clients = clients

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            path = _template_path(args[2], self.patterns)
            client = args[0]
            if isinstance(client, str) and client and self.clients != "keep":
                client = "-" if self.clients == "drop" else client_pseudonym(client)
            if path != args[2] or client is not args[0]:
                record.args = (client, args[1], path, *args[3:])
        return True


def mask_access_log(app: Any, clients: str = "pseudonymize") -> None:
    """Install :class:`SubjectPathsInLogs` on uvicorn's access logger for ``app``'s subject routes and ``clients``
    (once per process: a later app's routes and setting replace the former, every app has the same routes)."""
    if clients not in CLIENT_MODES:
        raise ValueError(f"clients must be one of {', '.join(CLIENT_MODES)}; got {clients!r}")
    patterns = subject_path_patterns(_route_paths(getattr(app, "routes", ())))
    logger = logging.getLogger(ACCESS_LOGGER)
    for installed in logger.filters:
        if isinstance(installed, SubjectPathsInLogs):
            installed.patterns = patterns
            installed.clients = clients
            return
    logger.addFilter(SubjectPathsInLogs(patterns, clients))
