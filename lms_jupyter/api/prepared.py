"""What the preparation step hands to :class:`~.drive.Generation`: the engine request,
the instance that runs it, and how its output is read back. Its own module so that the
local path (:mod:`.prepare`) and the remote one (:mod:`.remote`) both build it without
importing each other."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lms_jupyter.chat.output import ChatOutput
from lms_jupyter.engine.instance import ModelInstance
from lms_jupyter.engine.request import GenerationRequest

if TYPE_CHECKING:
    from lms_jupyter.api.openai.decode import ChunkOutput
    from lms_jupyter.engine.remote.models import RemoteRequest


@dataclass
class Prepared:
    """What to run (``request``), where (``model``), and how to read its output.

    For a remote model (``engine.remote.models.RemoteModel``) ``request`` is the
    ``RemoteRequest`` to relay and ``make_output`` decodes the engine's chunks."""

    model: ModelInstance
    request: GenerationRequest | RemoteRequest
    # None: plain text (completions); a remote model's decodes the engine's chunks
    make_output: Callable[[], ChatOutput | ChunkOutput] | None = None
    echo: str = ""  # text completions with ``echo``: the prompt comes first
    # text completions' log-probabilities: the prompt's length in characters, where the
    # legacy ``text_offset`` of the first generated token is (as OpenAI counts it)
    prompt_chars: int = 0
    stream: bool = False
    include_usage: bool = False
