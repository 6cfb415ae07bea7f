"""The OpenAPI 3.1 document served at ``{base_url}lms/openapi.json``.

Written once, from the route table (:func:`.routes.route_table`: every pattern, method,
one-line contract and the names of its body and answer schemas) and the schemas of
:mod:`lms_jupyter.api.schemas` (built from the request parser's own tables). The test
suite fuzzes the live server against this very document with schemathesis, so the
document and the server cannot drift apart silently.

Paths are relative to the server's ``base_url`` (clients join them, as with every Jupyter
route). Every operation needs authentication: the Jupyter token (or a logged-in
session) everywhere, a scoped API token everywhere but token management.
"""

from __future__ import annotations

import re

from lms_jupyter import __version__
from lms_jupyter.api.schemas import component_schemas
from lms_jupyter.api.spec.responses import LIST_QUERY, PURPOSE
from lms_jupyter.server.routes import Endpoint, route_table

_GROUP = re.compile(r"\(\?P<(\w+)>[^)]*\)")

# statuses any endpoint may answer besides 200, and what they mean
ERROR_STATUSES = {
    "400": "Invalid request (OpenAI error object naming the field)",
    "401": "Missing, unknown, revoked or expired token",
    "403": "Authenticated but not allowed (a scoped token on token management, Jupyter's "
    "authorizer)",
    "404": "No such model, instance, preset, job, token or URL",
    "405": "Method not allowed on this path",
    "409": "Conflict (identifier in use, model unloaded meanwhile, preset exists)",
    "413": "Request body over LMSJupyterApp.max_request_mb (uploads: the file limit)",
    "500": "The server failed (a model file that cannot be loaded, named in the message)",
    "502": "An upstream failed: the Hugging Face Hub (downloads) or a remote engine",
    "503": "The model's queue is full (ModelManager.max_queued_requests); see Retry-After",
}


def openapi_path(pattern: str) -> str:
    """A Tornado route pattern as an OpenAPI path: ``(?P<name>...)`` -> ``{name}``."""
    path = _GROUP.sub(lambda m: "{" + m.group(1) + "}", pattern)
    if path.endswith("/?"):
        path = path[:-2]
    return path.replace("\\.", ".")


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _error_responses() -> dict:
    out = {}
    for status, text in ERROR_STATUSES.items():
        response = {"description": text, "content": {"application/json": {"schema": _ref("Error")}}}
        if status == "503":
            response["headers"] = {
                "Retry-After": {
                    "description": "Seconds to wait before retrying",
                    "schema": {"type": "string", "pattern": "^[0-9]+$"},
                }
            }
        out[status] = response
    return out


def _operation(method: str, path: str, endpoint: Endpoint) -> dict:
    ok_content = {
        "application/json": {
            "schema": _ref(endpoint.response) if endpoint.response else {"type": "object"}
        }
    }
    if endpoint.stream:
        ok_content["text/event-stream"] = {
            "schema": {
                "type": "object",
                "properties": {"event": {"type": "string"}, "data": {"type": "string"}},
                "description": "With stream=true: 'data: <chunk JSON>' events, an error object as "
                "an event if generation fails, then 'data: [DONE]'",
            }
        }
    operation: dict = {
        "operationId": f"{method}_{re.sub(r'[^A-Za-z0-9]+', '_', path).strip('_')}",
        "summary": endpoint.doc,
        "responses": {
            "200": {"description": endpoint.doc, "content": ok_content},
            **_error_responses(),
        },
        "security": [{"jupyterToken": []}, {"scopedToken": []}]
        if endpoint.scoped
        else [{"jupyterToken": []}],
    }
    names = re.findall(r"{(\w+)}", path)
    if names:
        operation["parameters"] = [
            {
                "name": name,
                "in": "path",
                "required": True,
                "schema": {"type": "string", "minLength": 1},
            }
            for name in names
        ]
    if endpoint.body:
        schema = _ref(endpoint.request) if endpoint.request else {"type": "object"}
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": schema}},
        }
    if endpoint.upload:  # POST /v1/files: OpenAI's multipart form
        operation["requestBody"] = {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["file", "purpose"],
                        "properties": {
                            "file": {"type": "string", "format": "binary"},
                            "purpose": {"type": "string", **PURPOSE.schema()},
                        },
                    }
                }
            },
        }
    if endpoint.query:  # list pagination
        operation.setdefault("parameters", []).extend(
            [{"name": f.name, "in": "query", "schema": f.schema()} for f in LIST_QUERY.fields]
        )
    return operation


def _sse_operation(operation_id: str, summary: str, description: str, **extra) -> dict:
    """A GET of an endless server-sent event stream (its own handler, not the table's)."""
    return {
        "get": {
            "operationId": operation_id,
            "summary": summary,
            **extra,
            "security": [{"jupyterToken": []}, {"scopedToken": []}],
            "responses": {
                "200": {
                    "description": description,
                    "content": {"text/event-stream": {"schema": {"type": "string"}}},
                },
                **_error_responses(),
            },
        }
    }


def _log_stream(prefix: str) -> tuple[str, dict]:
    """``lms log stream``."""
    query = [
        {"name": "source", "in": "query", "schema": {"enum": ["model", "server"]}},
        {
            "name": "filter",
            "in": "query",
            "schema": {"type": "string"},
            "description": "input, output or input,output (model source)",
        },
        {
            "name": "stats",
            "in": "query",
            "schema": {"type": "string"},
            "description": "true: add prediction stats",
        },
    ]
    return f"/{prefix}/api/v0/logs/stream", _sse_operation(
        "get_logs_stream",
        "lms log stream, as server-sent events",
        "An endless SSE stream of LM Studio log events",
        parameters=query,
    )


def _model_events(prefix: str) -> tuple[str, dict]:
    """The model event feed of the sidebar and ``ps --watch``."""
    return f"/{prefix}/api/v0/events", _sse_operation(
        "get_model_events",
        "Model events as server-sent events: the sidebar's and ps --watch's feed",
        "An endless SSE stream: 'event: <kind>' and one 'data:' line of JSON per event. The "
        "first is 'snapshot' (every ps row); then loading, progress, loaded, status, queue, "
        "crashed and unloaded as they happen; a comment line every 15 s",
    )


def openapi_document(prefix: str = "lms") -> dict:
    paths: dict[str, dict] = {}
    for pattern, endpoints in route_table(prefix):
        path = openapi_path(pattern)
        for method, endpoint in endpoints.items():
            paths.setdefault(path, {})[method] = _operation(method, path, endpoint)
    for path, item in (_log_stream(prefix), _model_events(prefix)):
        paths[path] = item
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "lms-jupyter",
            "version": __version__,
            "description": "LM Studio's developer API (OpenAI-compatible /v1, LM Studio "
            "REST /api/v0 and /api/v1) on the Jupyter server port. Paths "
            "are relative to the server's base_url.",
        },
        "paths": paths,
        "components": {
            "schemas": component_schemas(),
            "securitySchemes": {
                "jupyterToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "The Jupyter server's token (also "
                    "'Authorization: token ...', or a logged-in "
                    "session with XSRF)",
                },
                "scopedToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "sk-lmj-<id>:<secret>",
                    "description": "A scoped API token (POST lms/api/v1/tokens): "
                    "the /lms routes only, no token management",
                },
            },
        },
    }
