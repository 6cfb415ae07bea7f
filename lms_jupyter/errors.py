"""Errors every front reports the same way: OpenAI's error object on /v1."""

from __future__ import annotations

MAX_MESSAGE = 2000


class APIError(Exception):
    """A user-facing failure with an HTTP status and OpenAI's error fields."""

    def __init__(
        self,
        message: str,
        status: int = 400,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
    ):
        if len(message) > MAX_MESSAGE:  # ids from requests can be 100k characters long
            message = message[:MAX_MESSAGE] + f"... ({len(message)} characters)"
        super().__init__(message)
        self.message = message
        self.status = status
        self.type = type
        self.param = param
        self.code = code
        self.headers: dict[str, str] = {}  # extra HTTP headers (Retry-After on a 503)

    def to_dict(self) -> dict:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }


def bad_request(message: str, param: str | None = None, code: str | None = None) -> APIError:
    return APIError(message, 400, "invalid_request_error", param, code)


def model_not_found(model, known: list[str] | None = None) -> APIError:
    hint = f" Available models: {', '.join(known)}." if known else ""
    model = str(model)
    if len(model) > 200:  # a 100k-character id is not echoed back whole
        model = model[:200] + f"... ({len(model)} characters)"
    # OpenAI's phrase first (clients match on it), then LM Studio's hint
    return APIError(
        f"The model `{model}` does not exist or you do not have access to it. "
        f"Please specify a valid downloaded model.{hint}",
        404,
        "invalid_request_error",
        "model",
        "model_not_found",
    )


def context_length_exceeded(n_prompt: int, n_ctx: int) -> APIError:
    # OpenAI's wording, which litellm and others match to raise their context-window error
    return APIError(
        f"This model's maximum context length is {n_ctx} tokens. However, your messages "
        f"resulted in {n_prompt} tokens. Please reduce the length of the messages, or load "
        "the model with a larger context length.",
        400,
        "invalid_request_error",
        "messages",
        "context_length_exceeded",
    )


def invalid_api_key(hint: str) -> APIError:
    """401 in OpenAI's phrasing ("Incorrect API key provided"), our hint after it."""
    return APIError(
        f"Incorrect API key provided. {hint}", 401, "invalid_request_error", None, "invalid_api_key"
    )


def rate_limited(subject: str, detail: str) -> APIError:
    """429 in OpenAI's phrasing ("Rate limit reached for ..."), our detail after it."""
    return APIError(
        f"Rate limit reached for {subject}. {detail}",
        429,
        "rate_limit_error",
        None,
        "rate_limit_exceeded",
    )


def queue_full(identifier: str, limit: int, retry_after: int = 1) -> APIError:
    """A model's queue is at its bound: 503 with Retry-After; nothing queued is dropped."""
    error = APIError(
        f'Model "{identifier}" already has {limit} requests queued or running '
        "(ModelManager.max_queued_requests); try again shortly.",
        503,
        "server_error",
        "model",
        "queue_full",
    )
    error.headers["Retry-After"] = str(retry_after)
    return error


def not_a_chat_model(identifier: str) -> APIError:
    """Chat or completions on an embedding model: a 400, never llama.cpp's 500."""
    return bad_request(
        f'"{identifier}" is an embedding model: it has no chat or completion '
        "endpoint. Use /v1/embeddings with it, or pick an LLM.",
        "model",
        "model_not_chat_capable",
    )


def model_unloaded(identifier: str, during: bool = False) -> APIError:
    what = "was unloaded during generation" if during else "was unloaded"
    return APIError(
        f"Model {identifier} {what}.", 409, "invalid_request_error", "model", "model_unloaded"
    )
