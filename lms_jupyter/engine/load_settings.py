"""What a load will run with, derived in one place for ``load`` and for ``estimate``.

A request leaves most settings open (context length, GPU offload, flash attention, slots, the
KV cache's cell type); the manager's configuration (``c.ModelManager.*``) and the device fill
them in. ``lms load --estimate-only`` must report exactly what ``lms load`` would do, so both
call :func:`resolve_load_settings` and nothing else decides a default.

The CPU default for the KV cache (issue 23, chosen by measurement; see the README's
Benchmarks): ``kv_cache_type = "auto"`` is q8_0 cells with flash attention on the CPU, f16
when layers are offloaded to a GPU (as LM Studio and llama.cpp do) or flash attention is off.
Embedding contexts always use f16.
"""

from __future__ import annotations

from dataclasses import dataclass

from lms_jupyter.engine.options import MAX_PARALLEL
from lms_jupyter.engine.worker.probe import gpu_offload_supported
from lms_jupyter.errors import bad_request
from lms_jupyter.models.catalog import ModelInfo, ModelVariant
from lms_jupyter.models.memory import estimate_memory, gpu_fraction, gpu_layers_setting

CPU_KV_CACHE_TYPE = "q8_0"  # kv_cache_type "auto" on the CPU (issue 23: by measurement)


@dataclass(frozen=True)
class LoadSettings:
    """The resolved settings of one load."""

    context_length: int
    n_layer: int
    n_gpu_layers: int
    flash_attention: bool
    parallel: int
    kv_cache_type: str

    @property
    def gpu_offload(self) -> float:
        """The share of layers on a GPU (0..1), as the memory estimate takes it."""
        return gpu_fraction(self.n_gpu_layers, self.n_layer)

    def estimate(self, info: ModelInfo, variant: ModelVariant):
        """The memory estimate of a load with these settings."""
        return estimate_memory(
            info.key,
            variant.header,
            variant.size_bytes,
            self.context_length,
            flash_attention=self.flash_attention,
            gpu_offload=self.gpu_offload,
            parallel=self.parallel,
            kv_type=self.kv_cache_type,
        )


def offloads(n_gpu_layers: int) -> bool:
    """Whether a load with ``n_gpu_layers`` really puts layers on a GPU."""
    return n_gpu_layers != 0 and gpu_offload_supported()


def resolve_load_settings(
    config,
    info: ModelInfo,
    variant: ModelVariant,
    *,
    context_length: int | None = None,
    gpu: float | None = None,
    flash_attention: bool | None = None,
    parallel: int | None = None,
) -> LoadSettings:
    """The settings a load of ``variant`` runs with. ``config`` holds the manager's settings
    (``default_context_length``, ``gpu_layers``, ``flash_attention``, ``kv_cache_type``,
    ``parallel``); the keyword arguments are the request's (None: not given). A bad
    combination is a 400 naming the field."""
    n_layer = int(variant.arch_value("block_count", 0) or 0)
    n_gpu_layers = config.gpu_layers if gpu is None else gpu_layers_setting(gpu, n_layer)
    flash = flash_attention_for(config, flash_attention, n_gpu_layers, info.type)
    return LoadSettings(
        context_length=_context_length(config, variant, context_length),
        n_layer=n_layer,
        n_gpu_layers=n_gpu_layers,
        flash_attention=flash,
        parallel=1
        if info.type != "llm"
        else max(1, min(MAX_PARALLEL, parallel or config.parallel)),
        kv_cache_type=kv_cache_type_for(config, info.type, flash, n_gpu_layers),
    )


def _context_length(config, variant: ModelVariant, requested: int | None) -> int:
    """The default, or the request's if the model can hold it."""
    if requested is None:
        return min(config.default_context_length, variant.max_context_length)
    if requested > variant.max_context_length:
        raise bad_request(
            f"context_length {requested} exceeds the model's maximum of "
            f"{variant.max_context_length}.",
            "context_length",
        )
    return requested


def flash_attention_for(config, requested: bool | None, n_gpu_layers: int, model_type: str) -> bool:
    """The request's choice, else the setting, else (None: by device) on with GPU offload or
    a quantized KV cache (which llama.cpp reads only with it; ``auto`` quantizes on the CPU)."""
    if requested is not None:
        return requested
    if config.flash_attention is not None:
        return config.flash_attention
    if model_type == "llm" and config.kv_cache_type != "f16":
        return True
    return offloads(n_gpu_layers)


def kv_cache_type_for(config, model_type: str, flash_attention: bool, n_gpu_layers: int) -> str:
    """f16 for an embedding context; for an LLM the setting, ``auto`` being q8_0 on the CPU
    with flash attention and f16 with GPU offload or without flash attention. A quantized
    setting with flash attention off is refused, as llama.cpp would."""
    if model_type != "llm" or config.kv_cache_type == "f16":
        return "f16"
    if config.kv_cache_type == "auto":
        if flash_attention and not offloads(n_gpu_layers):
            return CPU_KV_CACHE_TYPE
        return "f16"
    if not flash_attention:
        raise bad_request(
            f"A {config.kv_cache_type} KV cache (c.ModelManager.kv_cache_type) "
            "needs flash attention: leave flash_attention on, or set "
            "kv_cache_type to f16 or auto.",
            "flash_attention",
            "kv_cache_needs_flash_attention",
        )
    return config.kv_cache_type
