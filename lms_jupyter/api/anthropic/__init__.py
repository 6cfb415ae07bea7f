"""The Anthropic Messages API (``/v1/messages``) over the one chat path."""

from lms_jupyter.api.anthropic.api import AnthropicAPI
from lms_jupyter.api.anthropic.errors import anthropic_error

__all__ = ["AnthropicAPI", "anthropic_error"]
