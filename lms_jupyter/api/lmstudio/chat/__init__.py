"""LM Studio 0.4's native chat (``/api/v1/chat``) over the Responses machinery."""

from lms_jupyter.api.lmstudio.chat.api import LMStudioChatAPI

__all__ = ["LMStudioChatAPI"]
