"""How much memory a model will take, from its GGUF header alone (``lms load --estimate-only``).

The figures follow what llama.cpp allocates and what a loaded model actually keeps resident
on the CPU backend:

- weights: the file itself (mmap'd; every page is touched by the first generation);
- KV cache: f16 K and V for every cached layer, ``n_ctx`` (padded to 256) cells each.
  Sliding-window layers (Gemma 2/3, Cohere2, gpt-oss) keep only ``n_swa + n_ubatch``
  cells unless llama.cpp uses a full-size SWA cache, which is llama-cpp-python's default;
- compute: the working set of one prompt micro-batch (activations, attention scores,
  output logits) plus the runtime's own tables (the vocabulary dominates them);
- slots (``parallel``): the slots share the one KV cache (llama.cpp's unified cache), so
  each adds only what it samples with: a row of output logits and its sampler's
  candidate arrays.

llama.cpp *reserves* a bigger compute buffer than it touches on the CPU (worst case of
``n_ubatch`` output rows); untouched pages cost no RAM there, but on a GPU the
reservation is real, so the GPU figure uses it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from lms_jupyter.errors import bad_request
from lms_jupyter.models.gguf import GGUFHeader

MIB = 1 << 20
CONTEXT_PAD = 256  # llama.cpp rounds n_ctx up to this
DEFAULT_UBATCH = 512

# ggml type id -> (elements per block, bytes per block); ggml.h / ggml.c type traits
GGML_TYPE_SIZES = {
    0: (1, 4),
    1: (1, 2),
    2: (32, 18),
    3: (32, 20),
    6: (32, 22),
    7: (32, 24),
    8: (32, 34),
    9: (32, 40),
    10: (256, 84),
    11: (256, 110),
    12: (256, 144),
    13: (256, 176),
    14: (256, 210),
    15: (256, 292),
    16: (256, 66),
    17: (256, 74),
    18: (256, 98),
    19: (256, 50),
    20: (32, 18),
    21: (256, 110),
    22: (256, 82),
    23: (256, 136),
    24: (1, 1),
    25: (1, 2),
    26: (1, 4),
    27: (1, 8),
    28: (1, 8),
    29: (256, 56),
    30: (1, 2),
    34: (256, 54),
    35: (256, 66),
    39: (32, 17),
    40: (64, 36),
    41: (128, 18),
}
KV_TYPE_BYTES = {
    "f32": 4.0,
    "f16": 2.0,
    "bf16": 2.0,
    "q8_0": 34 / 32,
    "q5_1": 24 / 32,
    "q5_0": 22 / 32,
    "q4_1": 20 / 32,
    "q4_0": 18 / 32,
    "iq4_nl": 18 / 32,
}

# Which layers use sliding-window attention when the GGUF has no explicit pattern:
# every Nth layer (index % N == N - 1) is a global-attention layer.
_SWA_PERIOD = {"gemma2": 2, "gemma3": 6, "gemma3n": 5, "cohere2": 4, "gpt-oss": 2, "exaone4": 4}

# llama.cpp's own tables (vocabulary text, token maps, piece cache) per vocabulary entry,
# and the fixed cost of a context; measured on the CPU backend (llama-cpp-python 0.3.36).
_RUNTIME_BYTES_PER_TOKEN = 160
_RUNTIME_FIXED_BYTES = 12 * MIB
_SAMPLER_BYTES_PER_TOKEN = 24  # llama_token_data (12 bytes) in llama.cpp's and our arrays


def tensor_bytes(shape: tuple[int, ...], ggml_type: int) -> int:
    n = 1
    for d in shape:
        n *= d
    block, size = GGML_TYPE_SIZES.get(ggml_type, (1, 2))
    return (n // block) * size


def parse_gpu_offload(value) -> float:
    """LM Studio's ``--gpu``: ``off``, ``max`` or a fraction 0..1 of the layers."""
    if value is None or value is False:
        return 0.0
    if value is True:
        return 1.0
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("off", "none", "cpu", "0"):
            return 0.0
        if text in ("max", "auto", "full", "1"):
            return 1.0
        try:
            value = float(text)
        except ValueError:
            raise bad_request(
                "'gpu' must be 'off', 'max' or a number between 0 and 1.", "gpu"
            ) from None
    if isinstance(value, (int, float)) and 0 <= value <= 1:
        return float(value)
    raise bad_request("'gpu' must be 'off', 'max' or a number between 0 and 1.", "gpu")


def _per_layer(value, n_layer: int, default: int) -> list[int]:
    if isinstance(value, list) and len(value) == n_layer:
        return [int(v) for v in value]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return [int(value)] * n_layer
    return [default] * n_layer


def swa_layers(header: GGUFHeader, arch: str, n_layer: int) -> list[bool]:
    """Which layers use the sliding window (all False for models without one)."""
    if not header.get(f"{arch}.attention.sliding_window"):
        return [False] * n_layer
    pattern = header.get(f"{arch}.attention.sliding_window_pattern")
    if isinstance(pattern, list) and len(pattern) == n_layer:
        return [bool(p) for p in pattern]
    period = pattern if isinstance(pattern, int) and pattern > 0 else _SWA_PERIOD.get(arch)
    if not period:
        return [True] * n_layer
    return [i % period != period - 1 for i in range(n_layer)]


@dataclass
class ModelShape:
    """The numbers the estimate needs, read from GGUF metadata."""

    arch: str
    n_layer: int
    n_embd: int
    n_ff: int
    n_head: list[int]
    n_head_kv: list[int]
    head_dim_k: int
    head_dim_v: int
    n_vocab: int
    n_swa: int
    swa: list[bool]

    @classmethod
    def from_header(cls, header: GGUFHeader) -> ModelShape:
        arch = header.get("general.architecture", "llama")

        def value(name, default=0):
            return header.get(f"{arch}.{name}", default)

        n_layer = int(value("block_count", 0) or 0)
        n_embd = int(value("embedding_length", 0) or 0)
        ff = value("feed_forward_length", 0)
        n_ff = max(ff) if isinstance(ff, list) and ff else int(ff or 0)
        heads = _per_layer(value("attention.head_count", 1), n_layer, 1)
        kv_heads = _per_layer(value("attention.head_count_kv", None), n_layer, 0)
        kv_heads = [kv or h for kv, h in zip(kv_heads, heads, strict=False)]
        max_heads = max(heads) if heads else 1
        head_k = int(value("attention.key_length", 0) or (n_embd // max(max_heads, 1)))
        head_v = int(value("attention.value_length", 0) or head_k)
        n_vocab = int(
            value("vocab_size", 0)
            or header.array_lengths.get("tokenizer.ggml.tokens", 0)
            or len(header.get("tokenizer.ggml.tokens") or [])
        )
        return cls(
            arch,
            n_layer,
            n_embd,
            n_ff,
            heads,
            kv_heads,
            head_k,
            head_v,
            n_vocab,
            int(value("attention.sliding_window", 0) or 0),
            swa_layers(header, arch, n_layer),
        )


def padded_context(n_ctx: int) -> int:
    return -(-n_ctx // CONTEXT_PAD) * CONTEXT_PAD


def kv_cache_bytes(
    shape: ModelShape,
    n_ctx: int,
    *,
    n_ubatch: int = DEFAULT_UBATCH,
    kv_type: str = "f16",
    swa_full: bool = True,
    layers: range | None = None,
) -> int:
    """K and V for every attention layer (or only ``layers``), as llama.cpp sizes them."""
    cells = padded_context(n_ctx)
    swa_cells = (
        cells if swa_full or not shape.n_swa else min(cells, padded_context(shape.n_swa + n_ubatch))
    )
    per_elem = KV_TYPE_BYTES.get(kv_type, 2.0)
    total = 0.0
    for i in layers if layers is not None else range(shape.n_layer):
        n_kv = shape.n_head_kv[i]
        if n_kv <= 0:  # recurrent / attention-free layer
            continue
        layer_cells = swa_cells if shape.swa[i] else cells
        total += layer_cells * n_kv * (shape.head_dim_k + shape.head_dim_v) * per_elem
    return int(total)


def compute_bytes(
    shape: ModelShape,
    n_ctx: int,
    *,
    flash_attention: bool,
    n_ubatch: int = DEFAULT_UBATCH,
    reserved: bool = False,
) -> int:
    """Scratch memory of one micro-batch plus the runtime's tables.

    ``reserved=True`` gives llama.cpp's worst-case reservation (every row of the
    micro-batch producing logits), which is what a GPU really allocates.
    """
    n_ub = min(n_ubatch, padded_context(n_ctx))
    cells = padded_context(n_ctx)
    heads = max(shape.n_head) if shape.n_head else 1
    width = 5 * shape.n_embd + 3 * shape.n_ff + 2 * heads * max(shape.head_dim_k, 1)
    activations = n_ub * width * 4
    if flash_attention:
        attention = n_ub * cells * 2  # the f16 mask; scores are never materialised
    else:
        attention = n_ub * cells * (heads + 1) * 4  # f32 KQ scores and mask
    output_rows = n_ub if reserved else 1
    logits = output_rows * shape.n_vocab * 4
    if reserved:
        return int(max(logits, activations + attention))
    runtime = _RUNTIME_FIXED_BYTES + shape.n_vocab * _RUNTIME_BYTES_PER_TOKEN
    return int(activations + attention + logits + runtime)


def layer_weight_bytes(header: GGUFHeader, n_layer: int) -> tuple[list[int], int, int]:
    """(bytes per block layer, token embedding bytes, output head and norm bytes)."""
    per_layer = [0] * n_layer
    embed = head = 0
    for tensor in header.tensors:
        size = tensor_bytes(tensor.shape, tensor.ggml_type)
        if tensor.name.startswith("blk."):
            try:
                index = int(tensor.name.split(".")[1])
            except (IndexError, ValueError):
                head += size
                continue
            if 0 <= index < n_layer:
                per_layer[index] += size
                continue
        if tensor.name.startswith("token_embd"):
            embed += size
        else:
            head += size
    return per_layer, embed, head


@dataclass
class MemoryEstimate:
    model: str
    context_length: int
    flash_attention: bool
    gpu_offload: float
    gpu_layers: int
    weights: int
    kv_cache: int
    compute: int
    gpu_bytes: int
    parallel: int = 1
    slots: int = 0
    kv_cache_type: str = "f16"

    @property
    def total_bytes(self) -> int:
        return self.weights + self.kv_cache + self.compute + self.slots

    def as_dict(self, available_bytes: int | None = None) -> dict:
        fits = True if available_bytes is None else self.total_bytes <= available_bytes
        return {
            "model": self.model,
            "context_length": self.context_length,
            "parallel": self.parallel,
            "flash_attention": self.flash_attention,
            "kv_cache_type": self.kv_cache_type,
            "gpu_offload": self.gpu_offload,
            "gpu_layers": self.gpu_layers,
            "estimated_total_bytes": self.total_bytes,
            "estimated_gpu_bytes": self.gpu_bytes,
            "available_bytes": available_bytes,
            "fits": fits,
            "breakdown": {
                "weights": self.weights,
                "kv_cache": self.kv_cache,
                "compute": self.compute,
                "slots": self.slots,
            },
        }


def gpu_layers_setting(gpu_offload: float, n_layer: int) -> int:
    """llama.cpp's ``n_gpu_layers`` for a share of the layers (LM Studio's ``--gpu``):
    -1 (every layer and the output head) at 1, else the rounded share of the layers."""
    return -1 if gpu_offload >= 1 else int(round(gpu_offload * n_layer))


def gpu_fraction(n_gpu_layers: int, n_layer: int) -> float:
    """The share of the layers an ``n_gpu_layers`` setting offloads (-1: all)."""
    if n_gpu_layers < 0 or (n_layer and n_gpu_layers > n_layer):
        return 1.0
    return n_gpu_layers / n_layer if n_layer else 0.0


def gpu_layer_count(gpu_offload: float, n_layer: int) -> int:
    """Layers llama.cpp puts on the GPU; ``n_layer + 1`` also moves the output head."""
    if gpu_offload >= 1:
        return n_layer + 1
    return int(round(gpu_offload * n_layer))


def slots_bytes(shape: ModelShape, parallel: int) -> int:
    """What ``parallel`` slots add to one context: an output-logits row and a sampler
    (llama.cpp's candidate array, plus ours for grammars) each."""
    return int(max(parallel, 1) * shape.n_vocab * (4 + _SAMPLER_BYTES_PER_TOKEN))


def estimate_memory(
    model: str,
    header: GGUFHeader,
    size_bytes: int,
    context_length: int,
    *,
    flash_attention: bool = True,
    gpu_offload: float = 0.0,
    n_ubatch: int = DEFAULT_UBATCH,
    kv_type: str = "f16",
    swa_full: bool = True,
    parallel: int = 1,
) -> MemoryEstimate:
    """Estimate a load of ``header``'s model at ``context_length`` without loading it
    (``parallel`` slots share its KV cache)."""
    shape = ModelShape.from_header(header)
    kv = kv_cache_bytes(
        shape, context_length, n_ubatch=n_ubatch, kv_type=kv_type, swa_full=swa_full
    )
    compute = compute_bytes(
        shape, context_length, flash_attention=flash_attention, n_ubatch=n_ubatch
    )
    gpu_layers = gpu_layer_count(gpu_offload, shape.n_layer)
    gpu = 0
    if gpu_layers > 0 and shape.n_layer > 0:
        on_gpu = range(shape.n_layer - min(gpu_layers, shape.n_layer), shape.n_layer)
        per_layer, _embed, head = layer_weight_bytes(header, shape.n_layer)
        gpu = sum(per_layer[i] for i in on_gpu)
        if gpu_layers > shape.n_layer:
            gpu += head
        gpu += kv_cache_bytes(
            shape,
            context_length,
            n_ubatch=n_ubatch,
            kv_type=kv_type,
            swa_full=swa_full,
            layers=on_gpu,
        )
        gpu += compute_bytes(
            shape, context_length, flash_attention=flash_attention, n_ubatch=n_ubatch, reserved=True
        )
    return MemoryEstimate(
        model,
        context_length,
        flash_attention,
        gpu_offload,
        gpu_layers,
        size_bytes,
        kv,
        compute,
        gpu,
        parallel,
        slots_bytes(shape, parallel),
        kv_type,
    )


def available_memory_bytes() -> int:
    """Memory the system can give a new model now (MemAvailable), without psutil if need be."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 1 << 62  # unknown: do not block loads
