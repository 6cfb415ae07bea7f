"""The core objects the extension builds once and every handler shares."""

from __future__ import annotations

from dataclasses import dataclass, field

from lms_jupyter.api import OpenAICompatAPI
from lms_jupyter.api.files_batches.batches import BatchesAPI
from lms_jupyter.api.files_batches.files import FilesAPI
from lms_jupyter.api.lmstudio.downloads import DownloadAPI
from lms_jupyter.api.lmstudio.rest import LMStudioAPI
from lms_jupyter.api.lmstudio.tokens import TokenAPI
from lms_jupyter.api.responses.endpoint import ResponsesAPI
from lms_jupyter.engine.manager import ModelManager


@dataclass
class Services:
    manager: ModelManager
    openai: OpenAICompatAPI
    lmstudio: LMStudioAPI  # LM Studio's /api REST surface
    downloads: DownloadAPI  # model downloads from the Hugging Face Hub
    responses: ResponsesAPI  # /v1/responses: stored, stateful turns and MCP tools
    tokens: TokenAPI  # scoped API tokens (management; the handlers verify them)
    max_request_bytes: int = 16 * 2**20  # larger bodies get 413 before being read
    openapi: dict = field(default_factory=dict)  # the OpenAPI document of every /lms route
    streams: set = field(default_factory=set)  # SSE responses in flight (shutdown ends them)
    files: FilesAPI | None = None  # /v1/files (Batch API input and output)
    batches: BatchesAPI | None = None  # /v1/batches, run at low priority
    anthropic: object | None = None  # /v1/messages (api.anthropic.AnthropicAPI)
    lmstudio_chat: object | None = None  # /api/v1/chat (api.lmstudio_chat.LMStudioChatAPI)

    SETTINGS_KEY = "lms_jupyter_services"


def batch_endpoints(services: Services) -> dict:
    """What a batch line may call, by its ``url``: the same API calls as the routes.
    ``/v1/responses`` is offered when the server has a Responses API."""
    openai = services.openai
    endpoints = {
        "/v1/chat/completions": lambda body, channel: openai.chat_completions(body, channel),
        "/v1/completions": lambda body, channel: openai.completions(body, channel),
        "/v1/embeddings": lambda body, channel: openai.embeddings(body),
    }
    responses = getattr(services, "responses", None)
    if responses is not None:
        endpoints["/v1/responses"] = lambda body, channel: responses.create(body, channel)
    return endpoints
