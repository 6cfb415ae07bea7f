"""Wire fields of the Files and Batch APIs become typed values here.

The companion of :mod:`.requests` for ``/v1/files`` and ``/v1/batches`` (kept apart so the
endpoints' shared parser does not grow by a second surface); the bodies *inside* a batch
file are checked by :mod:`.requests` when each one runs, exactly as if it had been sent
on its own, so a bad body fails that request (in the error file), not the batch.

OpenAI's rules, as the ``openai`` client's ``files`` and ``batches`` resources send them:
an upload is multipart with ``file`` and ``purpose``; a batch names an uploaded file of
purpose ``batch``, an ``endpoint`` and a ``completion_window``; each line of the file is
``{"custom_id", "method": "POST", "url": <the endpoint>, "body"}``. A malformed line fails
the batch (``status: failed`` with ``errors``), as OpenAI does.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from lms_jupyter.api import fields as api_fields
from lms_jupyter.api.spec import responses as spec
from lms_jupyter.api.spec.responses import ENDPOINTS, PURPOSES
from lms_jupyter.errors import APIError, bad_request

MAX_FILE_BYTES = 200 * 2**20  # OpenAI's limit for batch input files
MAX_REQUESTS = 50_000  # OpenAI's limit per batch
DEFAULT_LIST_LIMIT = 20


@dataclass
class Upload:
    """A multipart form as the handler read it: the ``file`` part and the other fields."""

    filename: str | None
    content: bytes | None
    fields: dict[str, str] = field(default_factory=dict)


@dataclass
class FileUpload:
    filename: str
    purpose: str
    content: bytes


@dataclass
class BatchCreate:
    input_file_id: str
    endpoint: str
    completion_window: str
    window_seconds: int
    metadata: dict | None


@dataclass
class ListQuery:
    after: str | None = None
    limit: int = DEFAULT_LIST_LIMIT
    order: str = "desc"
    purpose: str | None = None


def file_upload(upload: Upload) -> FileUpload:
    """POST /v1/files: ``file`` and ``purpose``; a ``batch`` file must be JSONL."""
    if upload.content is None:
        raise bad_request(
            "Send the file as multipart/form-data with a 'file' part and a 'purpose' field.", "file"
        )
    purpose = (upload.fields.get("purpose") or "").strip()
    if not purpose:
        raise bad_request("'purpose' is required (use 'batch' for Batch API input).", "purpose")
    if purpose not in PURPOSES:
        raise bad_request(
            f"'purpose' must be one of {', '.join(PURPOSES)} (got {purpose!r}).", "purpose"
        )
    if len(upload.content) > MAX_FILE_BYTES:
        raise APIError(
            f"The file is {len(upload.content)} bytes; batch input files may be "
            f"at most {MAX_FILE_BYTES} bytes.",
            413,
            "invalid_request_error",
            "file",
            "file_too_large",
        )
    if purpose == "batch":
        check_jsonl(upload.content)
    name = (upload.filename or "upload.jsonl").replace("/", "_").replace("\\", "_")[:255]
    return FileUpload(name, purpose, upload.content)


def _lines(content: bytes) -> list[tuple[int, str]]:
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise bad_request(
            f"The file is not UTF-8 text ({exc.reason} at byte {exc.start}).", "file"
        ) from None
    return [(n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip()]


def check_jsonl(content: bytes) -> None:
    """Every non-blank line is a JSON object, and there are 1..MAX_REQUESTS of them."""
    lines = _lines(content)
    if not lines:
        raise bad_request("The file is empty; a batch file has one JSON request per line.", "file")
    if len(lines) > MAX_REQUESTS:
        raise bad_request(
            f"A batch file holds at most {MAX_REQUESTS} requests (got {len(lines)}).", "file"
        )
    for number, line in lines:
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            raise bad_request(
                f"Line {number} of the file is not valid JSON ({exc.msg}).", "file"
            ) from None
        if not isinstance(value, dict):
            raise bad_request(f"Line {number} of the file is not a JSON object.", "file")


def completion_window(value) -> int:
    """Seconds of a ``completion_window``: OpenAI's ``24h`` (any ``<N>h``, 1 to 168)."""
    match = re.fullmatch(r"(\d+)h", value) if isinstance(value, str) else None
    if match is None or not 1 <= int(match.group(1)) <= 168:
        raise bad_request(
            "'completion_window' must be '24h' (or another '<hours>h' up to "
            f"'168h'; got {value!r}).",
            "completion_window",
        )
    return int(match.group(1)) * 3600


def batch_create(body, available: tuple[str, ...]) -> BatchCreate:
    """POST /v1/batches. ``available``: the endpoints this server can run."""
    if not isinstance(body, dict):
        raise bad_request("The request body must be a JSON object.")
    file_id = body.get("input_file_id")
    if not isinstance(file_id, str) or not file_id:
        raise bad_request(
            "'input_file_id' is required: the id of a file uploaded with purpose 'batch'.",
            "input_file_id",
        )
    endpoint = body.get("endpoint")
    if endpoint not in ENDPOINTS:
        raise bad_request(
            f"'endpoint' must be one of {', '.join(ENDPOINTS)} (got {endpoint!r}).", "endpoint"
        )
    if endpoint not in available:
        raise bad_request(
            f"The endpoint {endpoint} is not available on this server, so a "
            f"batch cannot use it (available: {', '.join(available)}).",
            "endpoint",
            "unsupported_endpoint",
        )
    seconds = completion_window(body.get("completion_window"))
    metadata = None if body.get("metadata") is None else api_fields.metadata(body)
    return BatchCreate(file_id, endpoint, body["completion_window"], seconds, metadata)


def batch_lines(content: bytes, endpoint: str) -> tuple[list[tuple[int, str, dict]], list[dict]]:
    """((line, custom_id, body) for every request, OpenAI ``errors.data`` entries)."""
    requests, errors, seen = [], [], set()

    def error(number: int, code: str, message: str, param: str | None = None) -> None:
        errors.append({"code": code, "line": number, "message": message, "param": param})

    for number, line in _lines(content):
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            error(number, "invalid_json_line", f"Line {number} is not valid JSON ({exc.msg}).")
            continue
        if not isinstance(value, dict):
            error(number, "invalid_request", f"Line {number} is not a JSON object.")
            continue
        custom_id = value.get("custom_id")
        if not isinstance(custom_id, str) or not custom_id:
            error(
                number,
                "missing_required_parameter",
                f"Line {number} has no 'custom_id' (a non-empty string).",
                "custom_id",
            )
            continue
        if custom_id in seen:
            error(
                number,
                "duplicate_custom_id",
                f"The custom_id {custom_id!r} on line {number} is used more than once; "
                "each request needs its own.",
                "custom_id",
            )
            continue
        seen.add(custom_id)
        method = value.get("method")
        if method != "POST":
            error(
                number,
                "invalid_method",
                f"Line {number}: 'method' must be 'POST' (got {method!r}).",
                "method",
            )
            continue
        url = value.get("url")
        if url != endpoint:
            error(
                number,
                "mismatched_endpoint",
                f"Line {number}: 'url' is {url!r}, but this batch's endpoint is "
                f"{endpoint!r}; every request must use it.",
                "url",
            )
            continue
        body = value.get("body")
        if not isinstance(body, dict):
            error(
                number, "invalid_request", f"Line {number}: 'body' must be a JSON object.", "body"
            )
            continue
        requests.append((number, custom_id, body))
    return requests, errors


def list_query(query: dict, *, max_limit: int = 10_000) -> ListQuery:
    """``after``, ``limit``, ``order`` and ``purpose`` of a list request."""
    out = ListQuery(after=query.get("after") or None, purpose=query.get("purpose") or None)
    if query.get("limit") is not None:  # "" is not a number either
        try:
            out.limit = int(query["limit"])
        except ValueError:
            raise bad_request("'limit' must be an integer.", "limit") from None
        lowest = spec.LIST_QUERY["limit"].lo or 1  # declared with a lower bound of 1
        if not lowest <= out.limit <= max_limit:
            raise bad_request(f"'limit' must be between 1 and {max_limit}.", "limit")
    out.order = spec.LIST_QUERY["order"].read({"order": query.get("order") or None})
    return out
