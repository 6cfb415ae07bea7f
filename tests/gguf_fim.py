"""A test fixture: a copy of a GGUF file with fill-in-the-middle token ids added.

None of the small test models declares FIM tokens, so the FIM path of ``/v1/completions``
is tested end to end on a copy of SmolLM2 whose header also names three of its existing
special tokens as ``tokenizer.ggml.fim_pre/suf/mid_token_id``. The weights are copied
byte for byte after the rewritten header (re-padded to the file's alignment), so
llama.cpp loads the copy exactly as the original.
"""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

from lms_jupyter.models.gguf import GGUF_MAGIC, _Reader

_UINT32 = 4


def _kv_uint32(key: str, value: int) -> bytes:
    raw = key.encode("utf-8")
    return struct.pack("<Q", len(raw)) + raw + struct.pack("<I", _UINT32) + struct.pack("<I", value)


def write_with_fim_tokens(source: Path, target: Path, pre: int, suf: int, mid: int) -> Path:
    """Write ``target``: ``source`` (a GGUF v2/v3 file) plus the three FIM keys."""
    with open(source, "rb") as f:
        head = f.read(64 << 20)  # the header (vocabulary included) fits well within this
    if head[:4] != GGUF_MAGIC:
        raise ValueError(f"{source} is not a GGUF file")
    r = _Reader(head)
    r.pos = 4
    version = r.scalar("<I")
    if version < 2:
        raise ValueError("GGUF v1 is not supported here")
    n_tensors, n_kv = r.scalar("<Q"), r.scalar("<Q")
    kv_start = r.pos
    alignment = 32
    for _ in range(n_kv):
        key = r.string()
        value = r.value(r.scalar("<I"))
        if key == "general.alignment":
            alignment = int(value)
    kv_end = r.pos
    for _ in range(n_tensors):
        r.string()
        n_dims = r.scalar("<I")
        r.pos += 8 * n_dims + 4 + 8
    infos_end = r.pos
    data_start = -(-infos_end // alignment) * alignment
    extra = b"".join(
        _kv_uint32(k, v)
        for k, v in (
            ("tokenizer.ggml.fim_pre_token_id", pre),
            ("tokenizer.ggml.fim_suf_token_id", suf),
            ("tokenizer.ggml.fim_mid_token_id", mid),
        )
    )
    header = (
        GGUF_MAGIC
        + struct.pack("<I", version)
        + struct.pack("<QQ", n_tensors, n_kv + 3)
        + head[kv_start:kv_end]
        + extra
        + head[kv_end:infos_end]
    )
    header += b"\0" * (-len(header) % alignment)
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(source, "rb") as src, open(target, "wb") as out:
        out.write(header)
        src.seek(data_start)
        shutil.copyfileobj(src, out, 8 << 20)
    return target
