"""Anthropic's error object: ``{"type": "error", "error": {"type", "message"}}``.

Every failure of the Messages routes, from a bad field to a full queue, is an
:class:`~...errors.APIError` like everywhere else; only its spelling on the wire is
Anthropic's, chosen by HTTP status, so the ``anthropic`` SDK raises the matching
exception class (``BadRequestError``, ``AuthenticationError``, ``NotFoundError``...).
"""

from __future__ import annotations

from lms_jupyter.errors import APIError

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
    529: "overloaded_error",
}


def error_type(status: int) -> str:
    if status in ERROR_TYPES:
        return ERROR_TYPES[status]
    return "api_error" if status >= 500 else "invalid_request_error"


def anthropic_error(error: APIError) -> dict:
    """The body of an error answer (also the data of a stream's ``error`` event)."""
    return {"type": "error", "error": {"type": error_type(error.status), "message": error.message}}
