"""Transport-free API logic shared by the HTTP handlers and the kernel."""
from .openai_compat import OpenAICompatAPI
from .results import JSONResponse, StreamResponse

__all__ = ["OpenAICompatAPI", "JSONResponse", "StreamResponse"]
