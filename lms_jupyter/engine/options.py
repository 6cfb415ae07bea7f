"""The typed inputs of a load: what the caller asked for, and what the instance got.

``LoadRequest`` is built once from a front's input (HTTP body, ``lms load`` flags) by
``lms_jupyter.api.openai.requests``, which checks every field; the manager and the engine
trust it and never re-check. ``LoadConfig`` is the resolved configuration one loaded
instance runs with (defaults filled in), reported by ``lms ps`` and ``/api/v1/models``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class LoadRequest:
    """A request to load a model; ``None`` fields take the manager's defaults."""

    model: str
    identifier: str | None = None
    context_length: int | None = None
    ttl: float | None = None  # idle seconds before unloading (None: never, unless JIT)
    flash_attention: bool | None = None
    gpu: float | None = None  # share of the layers offloaded to a GPU, 0..1
    force: bool = False  # skip the memory guardrail
    parallel: int | None = None  # concurrent requests (slots) the instance serves

    def wire_body(self, model: str | None = None) -> dict:
        """This request as the body of LM Studio's ``POST /api/v1/models/load`` (to
        another server: a connected kernel's, or an LM Studio engine's with ``model`` its
        upstream key); fields left to the defaults are not sent."""
        body: dict[str, object] = {"model": model or self.model}
        for name in ("identifier", "context_length", "ttl", "flash_attention", "gpu", "parallel"):
            value = getattr(self, name)
            if value is not None:
                body[name] = value
        if self.force:
            body["force"] = True
        return body


@dataclass
class LoadConfig:
    """How one instance is loaded."""

    context_length: int
    flash_attention: bool = True
    n_gpu_layers: int = 0  # -1: every layer
    n_threads: int | None = None
    n_batch: int = 512
    use_mmap: bool = True
    parallel: int = 1  # slots: sequences of the one context, decoded together
    kv_cache_type: str = "f16"  # K and V cells: f16, or quantized q8_0 / q4_0


MAX_PARALLEL = 64  # LM Studio's UI stops well below llama.cpp's 256 sequences


def default_threads() -> int:
    """The cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return os.cpu_count() or 1


class LoadCancelled(Exception):
    """A load stopped because its progress callback asked it to."""


# llama.cpp's KV cache types that ``c.ModelManager.kv_cache_type`` offers (ggml type ids):
# f16 (llama.cpp's default) and the two quantizations its CPU flash-attention kernel reads
KV_CACHE_TYPES = {"f16": 1, "q8_0": 8, "q4_0": 2}
