"""The gateway's error contract per route: one table, two readers.

``openapi.document`` turns it into each operation's ``responses`` (with the
error body schema, and no FastAPI 422: validation errors are answered 400), and
``python -m mlplatform.gateway.contract docs/gateway.md`` writes the same table
into the docs between the ``error-contract`` markers.  A unit test checks that
every route of the app has an entry, that the docs match, and the schemathesis
run in ``make test`` checks that no route answers a status it does not list.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Tuple

from .errors import BAD_REQUEST, FORBIDDEN, MODEL_FAILED, TOO_LARGE, UNAUTHORIZED, UNAVAILABLE
from .scopes import JOBS, LIFECYCLE, PREDICT, PREDICTIONS_READ, SCOPES


@dataclass(frozen=True)
class Outcome:
    status: int
    when: str
    # "predict": only when the predict routes are closed (PUBLIC_PREDICT=false).
    only_if: str = ""
    message: str = ""  # when not the status's usual one (MESSAGES): a 403 `forbidden`

    @property
    def text(self) -> str:
        return self.message or MESSAGES[self.status]


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    errors: Tuple[Outcome, ...]
    success: int = 200
    success_type: str = "application/json"
    # The token scope the route needs (scopes.py); "" none.  PREDICT routes need it only
    # when the predict routes are closed; the 401 and 403 it implies are added by outcomes().
    scope: str = ""


MESSAGES = {400: BAD_REQUEST, 401: UNAUTHORIZED, 403: MODEL_FAILED, 404: "not found",
            409: "not ready", 413: TOO_LARGE, 502: "model server refused", 503: UNAVAILABLE}

# What a route's scope implies (access_outcomes() adds them).
CLOSED = Outcome(401, "no valid `Authorization: Bearer <token>` (only when "
                      "`PUBLIC_PREDICT=false`)", only_if="predict")
CLOSED_SCOPE = Outcome(403, "the token lacks the `predict` scope (`scope` names it; only when "
                            "`PUBLIC_PREDICT=false`)", only_if="predict", message=FORBIDDEN)
TOKEN = Outcome(401, "no valid `Authorization: Bearer <token>`")


def _scoped(scope: str) -> Outcome:
    extra = " (or `lifecycle:<model>` for this model)" if scope == LIFECYCLE else ""
    return Outcome(403, f"the token lacks the `{scope}` scope{extra} (`scope` names it)",
                   message=FORBIDDEN)


# The texts shared by several routes.
BODY_LIMIT = Outcome(413, "the body is over `MAX_BODY_BYTES` (`limit_bytes` says how much)")
MODEL_REF = ("`?model=` malformed, naming a model nobody registered, or an alias the model "
             "does not have")
NOT_SERVING = ("the model server is unreachable, timing out or reloading; the model is "
               "registered but not deployed; the alias points to a version not served; the "
               "registry is unreachable and nothing is cached")
MODEL_FAILS = "the model was reached and failed (`reason`), or answered NaN or infinity"
TABLE_PROBLEMS = ("no body or `file` field; unreadable CSV, JSON or zip; an empty `id` cell; a "
                  "list or object as a table value (row and column named); a zip entry with "
                  "an absolute path, `..` or a bad checksum; images for a tabular model or "
                  "a table for an image model")

ID_PROBLEM = "the id is not a whole number from 1 to 2147483647"

ROUTES: Tuple[Route, ...] = (
    Route("GET", "/health", errors=()),
    Route("GET", "/metrics", errors=()),
    Route("GET", "/ready", errors=(Outcome(503, "MLServer or one of the routes' models is not "
                                                "ready (the body says which; each probe "
                                                "times out after 2 s)"),)),
    Route("GET", "/models", scope=PREDICT,
          errors=(Outcome(503, "the model server is unreachable"),)),
    Route("POST", "/forward", scope=PREDICT, errors=(
        Outcome(400, "body not JSON or nested more than 64 levels; missing `image` field; "
                     "an image for a JSON model or JSON for an image model; an `X-Param-*` "
                     "header the model does not take; " + MODEL_REF),
        Outcome(403, MODEL_FAILS), BODY_LIMIT, Outcome(503, NOT_SERVING))),
    Route("POST", "/forward_batch", scope=PREDICT, errors=(
        Outcome(400, TABLE_PROBLEMS + "; " + MODEL_REF),
        Outcome(403, MODEL_FAILS + ", for any row"),
        Outcome(413, "the body is over `MAX_BODY_BYTES`; a zip unpacking to more than "
                     "`MAX_UNPACKED_BYTES` (counted while inflating) or of more than "
                     "`MAX_ZIP_ENTRIES` entries (`limit_entries`; counted before the zip is "
                     "opened); a batch over the model server's message limit"),
        Outcome(503, NOT_SERVING))),
    Route("POST", "/evaluate", scope=PREDICT, errors=(
        Outcome(400, TABLE_PROBLEMS + "; no label column, an empty label cell, an "
                "image without a label; " + MODEL_REF),
        Outcome(403, MODEL_FAILS + ", for any row"),
        Outcome(413, "as `/forward_batch`"), Outcome(503, NOT_SERVING))),
    Route("GET", "/metadata", scope=PREDICT, errors=(
        Outcome(400, MODEL_REF),
        Outcome(503, NOT_SERVING + "; the model's provenance cannot be read"))),
    Route("POST", "/predict", scope=PREDICT, errors=(
        Outcome(400, "body not JSON, not one JSON object, or nested more than 64 levels"),
        Outcome(403, MODEL_FAILS), BODY_LIMIT,
        Outcome(503, "the route's model is not served or the model server is unreachable"))),
    Route("POST", "/predict_scenario", scope=PREDICT, errors=(
        Outcome(400, "as `/predict`"), Outcome(403, MODEL_FAILS), BODY_LIMIT,
        Outcome(503, "as `/predict`"))),
    Route("POST", "/jobs", scope=JOBS, errors=(
        Outcome(400, "unreadable multipart body; missing `file`, `model` or `target`; the "
                     "file's name is `..`, over 255 bytes or holds control characters; an "
                     "unknown model, one that is not an imported folder, or a target that is "
                     "not one of its file targets"),
        BODY_LIMIT, Outcome(503, "the registry or the job storage cannot be reached")),
        success=202),
    Route("GET", "/jobs/{job_id}", scope=JOBS,
          errors=(Outcome(404, "no such job for this token's group"),)),
    Route("GET", "/jobs/{job_id}/result", scope=JOBS, errors=(
        Outcome(404, "as `/jobs/{job_id}`"),
        Outcome(409, "the job has not succeeded (`status` and `error` say why)")),
        success_type="application/octet-stream"),
    Route("PUT", "/add_data", scope=LIFECYCLE, errors=(
        Outcome(400, "no `?model=`, or a model without a training dataset; unreadable CSV; a "
                     "missing or unknown column, a value of the wrong type or range, a label "
                     "not among the dataset's classes (column and rows named; nothing is "
                     "written)"),
        BODY_LIMIT, Outcome(503, "the feature store cannot be reached"))),
    Route("PUT", "/retrain", scope=LIFECYCLE, errors=(
        Outcome(400, "no `?model=`, or a model the pipeline cannot retrain"),
        Outcome(409, "a training of this model is already requested or running")),
        success=202),
    Route("GET", "/metrics/{training_id}", scope=LIFECYCLE, errors=(
        Outcome(400, ID_PROBLEM),
        Outcome(404, "no such training for this token's group"),
        Outcome(503, "the registry cannot be read"))),
    Route("GET", "/metrics/{training_id}/plots/{name}", scope=LIFECYCLE, errors=(
        Outcome(400, ID_PROBLEM),
        Outcome(404, "no such training, or it has no such plot (yet)"),
        Outcome(503, "the registry cannot be read")), success_type="image/png"),
    Route("POST", "/deploy/{training_id}", scope=LIFECYCLE, errors=(
        Outcome(400, ID_PROBLEM),
        Outcome(404, "no such training for this token's group"),
        Outcome(409, "the training has not succeeded, or its version failed the pipeline's "
                     "serving check (the reason is in `detail`)"),
        Outcome(502, "the model server could not load the version, or the version failed its "
                     "integrity check (a file differs from its manifest, or it is unsigned "
                     "where a key is required; the reason in `detail`); nothing was switched, "
                     "the champion goes on serving"),
        Outcome(503, "the registry cannot be read, or the gateway does not know MLServer's "
                     "model repository"))),
    Route("POST", "/rollback", scope=LIFECYCLE, errors=(
        Outcome(400, "no `?model=`, or a name the registry refuses"),
        Outcome(404, "no such registered model"),
        Outcome(409, "no previous champion to go back to"),
        Outcome(502, "as `/deploy/{training_id}`"), Outcome(503, "as `/deploy/{training_id}`"))),
    Route("GET", "/models/{name}/shadow", scope=PREDICT, errors=(
        Outcome(404, "no shadow calls for this model through this gateway (since it "
                     "started)"),)),
    Route("GET", "/models/{name}/versions", scope=LIFECYCLE, errors=(
        Outcome(400, "a name the registry refuses"), Outcome(404, "no such registered model"),
        Outcome(503, "the registry cannot be read"))),
    Route("GET", "/predictions", scope=PREDICTIONS_READ, errors=(
        Outcome(400, "`since` is neither an ISO 8601 time nor Unix seconds; `after` or "
                     "`limit` out of range"),
        Outcome(404, "the prediction log is off"),
        Outcome(503, "the prediction log's database cannot be read"))),
    Route("GET", "/monitoring/drift", scope=PREDICT, errors=(
        Outcome(400, MODEL_REF),
        Outcome(404, "the version has no reference profile (the reason says why)"),
        Outcome(503, NOT_SERVING + "; the profile cannot be read from the registry"))),
    Route("GET", "/monitoring/live", scope=PREDICT, errors=()),
)

ERROR_SCHEMA = {
    "title": "Error", "type": "object", "required": ["message"],
    "description": "`message` is one of the contract's (e.g. `bad request`); `detail` says "
                   "what is wrong, `field` names the field, parameter or column, `reason` is "
                   "the model's own (403).",
    "properties": {"message": {"type": "string"}, "detail": {"type": "string"},
                   "field": {"type": "string"}, "reason": {"type": "string"},
                   "scope": {"type": "string"},
                   "limit_bytes": {"type": "integer"}, "limit_entries": {"type": "integer"}},
}
TEXT_OR_NULL = {"type": ["string", "null"]}
JOB_SCHEMA = {
    "title": "Job", "type": "object", "required": ["id", "status", "status_url", "result_url"],
    "properties": {"id": {"type": "string"}, "model": {"type": "string"},
                   "target": {"type": "string"},
                   "status": {"enum": ["Requested", "Running", "Succeeded", "Failed"]},
                   "input": {"type": "string"}, "output": TEXT_OR_NULL, "error": TEXT_OR_NULL,
                   "created_at": TEXT_OR_NULL, "started_at": TEXT_OR_NULL,
                   "finished_at": TEXT_OR_NULL, "status_url": {"type": "string"},
                   "result_url": {"type": "string"}},
}
# A submitted job's id leads to its status and result (OpenAPI links: schemathesis's
# stateful phase follows them).
JOB_LINKS = {
    "status": {"operationRef": "#/paths/~1jobs~1{job_id}/get",
               "parameters": {"job_id": "$response.body#/id"}},
    "result": {"operationRef": "#/paths/~1jobs~1{job_id}~1result/get",
               "parameters": {"job_id": "$response.body#/id"}},
}
READINESS_SCHEMA = {
    "title": "Readiness", "type": "object", "required": ["ready", "model_server", "models"],
    "properties": {"ready": {"type": "boolean"}, "model_server": {"type": "boolean"},
                   "models": {"type": "object", "additionalProperties": {"type": "boolean"}}},
}


SUCCESS_SCHEMAS = {("GET", "/ready"): "Readiness", ("POST", "/jobs"): "Job",
                   ("GET", "/jobs/{job_id}"): "Job"}


def route(method: str, path: str) -> Route:
    for found in ROUTES:
        if (found.method, found.path) == (method.upper(), path):
            return found
    raise KeyError(f"{method} {path} has no entry in the error contract (gateway/contract.py)")


def access_outcomes(entry: Route) -> Tuple[Outcome, ...]:
    """The 401 and 403 the route's scope implies."""
    if not entry.scope:
        return ()
    if entry.scope == PREDICT:
        return (CLOSED, CLOSED_SCOPE)
    return (TOKEN, _scoped(entry.scope))


def all_outcomes(entry: Route) -> Tuple[Outcome, ...]:
    return tuple(sorted(access_outcomes(entry) + entry.errors, key=lambda o: o.status))


def outcomes(entry: Route, predict_closed: bool) -> List[Outcome]:
    return [o for o in all_outcomes(entry)
            if not o.only_if or (o.only_if == "predict" and predict_closed)]


def needs_token(entry: Route, predict_closed: bool) -> bool:
    return bool(entry.scope) and (entry.scope != PREDICT or predict_closed)


def apply(schema: Dict[str, Any], predict_closed: bool) -> Dict[str, Any]:
    """``schema`` (FastAPI's OpenAPI, a copy) with each operation's real responses."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        components.pop(unused, None)
    components["Error"] = ERROR_SCHEMA
    components["Readiness"] = READINESS_SCHEMA
    components["Job"] = JOB_SCHEMA
    schema["components"]["securitySchemes"] = {"bearer": {
        "type": "http", "scheme": "bearer",
        "description": "`mlplatform token create --group G --scope SCOPE`; scopes: "
                       + "; ".join(f"`{name}`: {what}" for name, what in SCOPES.items())}}
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            entry = route(method, path)
            responses = operation.setdefault("responses", {})
            responses.pop("422", None)
            success = responses.setdefault(str(entry.success), {"description": "Success"})
            if entry.success_type != "application/json":
                success["content"] = {entry.success_type: {"schema": {
                    "type": "string", "format": "binary"}}}
            for outcome in outcomes(entry, predict_closed):
                content = error
                if path == "/ready":
                    content = {"application/json": {"schema": {
                        "$ref": "#/components/schemas/Readiness"}}}
                described = f"{outcome.text}: {outcome.when}"
                earlier = responses.get(str(outcome.status))
                if earlier and earlier.get("content") is content:  # two meanings of a 403
                    described = f"{earlier['description']}; or {described}"
                responses[str(outcome.status)] = {"description": described, "content": content}
            if needs_token(entry, predict_closed):
                operation["security"] = [{"bearer": []}]
                operation["x-scope"] = entry.scope
                operation["description"] = (operation.get("description", "") + "\n\nNeeds a "
                                            f"token with the `{entry.scope}` scope (or "
                                            "`admin`).").strip()
            special = SUCCESS_SCHEMAS.get((entry.method, path))
            if special:
                success["content"] = {"application/json": {"schema": {
                    "$ref": f"#/components/schemas/{special}"}}}
            if (entry.method, path) == ("POST", "/jobs"):
                success["links"] = JOB_LINKS
    return schema


START, END = "<!-- error-contract:start -->", "<!-- error-contract:end -->"


def markdown() -> str:
    """The per-route table of docs/gateway.md."""
    lines = [START,
             "<!-- generated by `python -m mlplatform.gateway.contract docs/gateway.md` from "
             "gateway/contract.py; edit that file, not this table -->",
             "", "Every error is JSON: `message` (below), `detail` (what is wrong), `field` (the "
             "field, parameter or column) where one is to blame; a 403 carries the model's "
             "`reason` (at most 1,000 characters), a 413 `limit_bytes` or `limit_entries`.", "",
             "| status | `message` |", "|---|---|"]
    for status, message in MESSAGES.items():
        lines.append(f"| {status} | `{message}` |")
        if status == 403:
            lines.append(f"| 403 | `{FORBIDDEN}`: the token lacks the route's scope (`scope` "
                         "names it) |")
    lines += ["", "Scopes (`mlplatform token create --group G --scope SCOPE ...`):", "",
              "| scope | allows |", "|---|---|"]
    lines += [f"| `{name}` | {what} |" for name, what in SCOPES.items()]
    lines += ["", "| route | scope | status | when |", "|---|---|---|---|"]
    for entry in ROUTES:
        name = f"`{entry.method} {entry.path}`"
        scope = (f"`{entry.scope}`" + (" (when closed)" if entry.scope == PREDICT else "")
                 if entry.scope else "none")
        success = f"{entry.success}" + (f" ({entry.success_type})"
                                        if entry.success_type != "application/json" else "")
        lines.append(f"| {name} | {scope} | {success} | success |")
        for outcome in all_outcomes(entry):
            lines.append(f"| | | {outcome.status} `{outcome.text}` | "
                         f"{outcome.when.replace('|', '/')} |")
    lines.append(END)
    return "\n".join(lines)


def with_table(text: str) -> str:
    """``text`` (docs/gateway.md) with the table between the markers regenerated."""
    start, end = text.find(START), text.find(END)
    if start < 0 or end < start:
        raise ValueError(f"the docs have no {START} ... {END} section")
    return text[:start] + markdown() + text[end + len(END):]


def main(argv: List[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m mlplatform.gateway.contract docs/gateway.md", file=sys.stderr)
        return 2
    path = Path(argv[0])
    path.write_text(with_table(path.read_text(encoding="utf-8")), encoding="utf-8")
    print(f"wrote the error contract into {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
