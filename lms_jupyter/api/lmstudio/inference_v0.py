"""LM Studio's /api/v0 inference endpoints: OpenAI's shapes plus ``stats``, ``model_info``
and ``runtime``.

They are the /v1 endpoints with :func:`v0_extras` plugged in: the three objects go into
each response body, and into one final stream chunk that also carries ``usage`` (LM
Studio's own v0 stream was criticised for leaving them out).
"""

from __future__ import annotations

import platform
from functools import lru_cache

from lms_jupyter.api.events import Done


@lru_cache(maxsize=1)
def runtime_info() -> dict:
    """Which engine runs the models, named like LM Studio's runtimes (asked of a
    short-lived process: llama.cpp never loads in the server)."""
    from lms_jupyter.engine.worker.probe import engine_runtime

    runtime = engine_runtime()
    gpu = bool(runtime.get("gpu"))
    system = {"darwin": "mac", "windows": "win"}.get(
        platform.system().lower(), platform.system().lower()
    )
    backend = "gpu" if gpu else "cpu"
    return {
        "name": f"llama.cpp-{system}-{platform.machine().lower()}-{backend}",
        "version": runtime.get("version", "unknown"),
        "supported_formats": ["gguf"],
    }


def stats(done: Done) -> dict:
    """LM Studio's prediction stats for a finished generation."""
    finished = done.stats
    out = {
        "tokens_per_second": finished.tokens_per_second,
        "time_to_first_token": round(finished.time_to_first_token, 4),
        "generation_time": round(finished.generation_time, 4),
        "stop_reason": done.stop_reason,
    }
    if finished.draft_stats:
        out.update(finished.draft_stats)
    return out


def model_info(model) -> dict:
    return {
        "arch": model.variant.arch,
        "quant": model.variant.quantization,
        "format": "gguf",
        "context_length": model.config.context_length,
    }


def v0_extras(done: Done, model) -> dict:
    """What /api/v0 adds to a finished chat or text completion."""
    return {"stats": stats(done), "model_info": model_info(model), "runtime": runtime_info()}
