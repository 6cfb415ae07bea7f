"""The Anthropic Messages API (``/v1/messages``) over the one chat path."""
from .api import AnthropicAPI
from .errors import anthropic_error

__all__ = ["AnthropicAPI", "anthropic_error"]
