"""Transport-free API logic shared by the HTTP handlers and the kernel."""

from lms_jupyter.api.openai.endpoints import OpenAICompatAPI
from lms_jupyter.api.results import JSONResponse, StreamResponse

__all__ = ["OpenAICompatAPI", "JSONResponse", "StreamResponse"]
