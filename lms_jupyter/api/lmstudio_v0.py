"""LM Studio's /api/v0 inference endpoints: OpenAI's shapes plus ``stats``, ``model_info``
and ``runtime``.

Streams carry the same three objects (and ``usage``) in one extra chunk after the
finish_reason chunk, which LM Studio's own v0 stream was criticised for leaving out.
"""
from __future__ import annotations

import platform
from functools import lru_cache

from .openai_compat import Collector, OpenAICompatAPI

STOP_TOOL_CALLS = "toolCalls"


@lru_cache(maxsize=1)
def runtime_info() -> dict:
    """Which engine runs the models, named like LM Studio's runtimes."""
    import llama_cpp

    try:
        gpu = bool(llama_cpp.llama_supports_gpu_offload())
    except Exception:  # noqa: BLE001 - an old binding without the probe
        gpu = False
    system = {"darwin": "mac", "windows": "win"}.get(platform.system().lower(),
                                                      platform.system().lower())
    backend = "gpu" if gpu else "cpu"
    return {"name": f"llama.cpp-{system}-{platform.machine().lower()}-{backend}",
            "version": getattr(llama_cpp, "__version__", "unknown"),
            "supported_formats": ["gguf"]}


def stats(collector: Collector) -> dict:
    """LM Studio's prediction stats for a finished generation."""
    done = collector.finished
    stop_reason = done.stop_reason
    if collector.finish_reason == "tool_calls":
        stop_reason = STOP_TOOL_CALLS
    out = {"tokens_per_second": done.tokens_per_second,
           "time_to_first_token": round(done.time_to_first_token, 4),
           "generation_time": round(done.generation_time, 4),
           "stop_reason": stop_reason}
    if done.draft_stats:
        out.update(done.draft_stats)
    return out


def model_info(collector: Collector) -> dict:
    model = collector.prep.model
    return {"arch": model.variant.arch, "quant": model.variant.quantization, "format": "gguf",
            "context_length": model.config.context_length}


class LMStudioV0API(OpenAICompatAPI):
    """/api/v0/chat/completions, /completions and /embeddings."""

    def decorate_response(self, collector: Collector, body: dict) -> None:
        body["stats"] = stats(collector)
        body["model_info"] = model_info(collector)
        body["runtime"] = runtime_info()

    def extra_final_chunks(self, collector: Collector) -> list[dict]:
        chunk = collector._chunk({})
        chunk["choices"] = []
        chunk["usage"] = collector.finished.usage
        chunk["stats"] = stats(collector)
        chunk["model_info"] = model_info(collector)
        chunk["runtime"] = runtime_info()
        return [chunk]
