"""The core objects the extension builds once and every handler shares."""
from __future__ import annotations

from dataclasses import dataclass, field

from ..api import OpenAICompatAPI
from ..api.downloads import DownloadAPI
from ..api.lmstudio import LMStudioAPI
from ..api.responses_api import ResponsesAPI
from ..api.tokens import TokenAPI
from ..engine.manager import ModelManager


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

    SETTINGS_KEY = "lms_jupyter_services"
