"""The core objects the extension builds once and every handler shares."""
from __future__ import annotations

from dataclasses import dataclass

from ..api import OpenAICompatAPI
from ..api.downloads import DownloadAPI
from ..api.lmstudio import LMStudioAPI
from ..api.responses_api import ResponsesAPI
from ..engine.manager import ModelManager


@dataclass
class Services:
    manager: ModelManager
    openai: OpenAICompatAPI
    lmstudio: LMStudioAPI  # LM Studio's /api REST surface
    downloads: DownloadAPI  # model downloads from the Hugging Face Hub
    responses: ResponsesAPI  # /v1/responses: stored, stateful turns and MCP tools

    SETTINGS_KEY = "lms_jupyter_services"
