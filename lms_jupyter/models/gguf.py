"""Read a GGUF file's header (metadata and tensor shapes) without loading weights.

The catalog must describe every model on disk quickly and without llama_cpp, so this
parses only the key/value section and the tensor index, skipping big arrays
(the vocabulary) by length.
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass, field
from pathlib import Path

GGUF_MAGIC = b"GGUF"

# value type ids from the GGUF spec
_SCALARS = {
    0: "<B",
    1: "<b",
    2: "<H",
    3: "<h",
    4: "<I",
    5: "<i",
    6: "<f",
    7: "<?",
    10: "<Q",
    11: "<q",
    12: "<d",
}
_STRING, _ARRAY = 8, 9
# arrays longer than this are summarised by their length (vocabularies, merges)
_MAX_KEPT_ARRAY = 64

# llama.cpp's LLAMA_FTYPE enum, i.e. what `general.file_type` means
FILE_TYPES = {
    0: "F32",
    1: "F16",
    2: "Q4_0",
    3: "Q4_1",
    7: "Q8_0",
    8: "Q5_0",
    9: "Q5_1",
    10: "Q2_K",
    11: "Q3_K_S",
    12: "Q3_K_M",
    13: "Q3_K_L",
    14: "Q4_K_S",
    15: "Q4_K_M",
    16: "Q5_K_S",
    17: "Q5_K_M",
    18: "Q6_K",
    19: "IQ2_XXS",
    20: "IQ2_XS",
    21: "Q2_K_S",
    22: "IQ3_XS",
    23: "IQ3_XXS",
    24: "IQ1_S",
    25: "IQ4_NL",
    26: "IQ3_S",
    27: "IQ3_M",
    28: "IQ2_S",
    29: "IQ2_M",
    30: "IQ4_XS",
    31: "IQ1_M",
    32: "BF16",
    36: "TQ1_0",
    37: "TQ2_0",
    38: "MXFP4",
}


class GGUFError(ValueError):
    """The file is not a GGUF file we can read."""


@dataclass
class TensorInfo:
    name: str
    shape: tuple[int, ...]
    ggml_type: int

    @property
    def n_elements(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n


@dataclass
class GGUFHeader:
    version: int
    metadata: dict
    tensors: list[TensorInfo] = field(default_factory=list)
    array_lengths: dict = field(default_factory=dict)

    def get(self, key, default=None):
        return self.metadata.get(key, default)


class _Reader:
    def __init__(self, buf):
        self.buf = buf
        self.pos = 0

    def scalar(self, fmt: str):
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.buf):
            raise GGUFError("truncated GGUF header")
        (value,) = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += size
        return value

    def string(self) -> str:
        n = self.scalar("<Q")
        if self.pos + n > len(self.buf):
            raise GGUFError("truncated GGUF string")
        raw = self.buf[self.pos : self.pos + n]
        self.pos += n
        return bytes(raw).decode("utf-8", errors="replace")

    def skip_string(self) -> None:
        n = self.scalar("<Q")
        self.pos += n

    def value(self, vtype: int):
        if vtype in _SCALARS:
            return self.scalar(_SCALARS[vtype])
        if vtype == _STRING:
            return self.string()
        if vtype == _ARRAY:
            etype = self.scalar("<I")
            count = self.scalar("<Q")
            if count <= _MAX_KEPT_ARRAY:
                return [self.value(etype) for _ in range(count)]
            self.skip_array(etype, count)
            return _LongArray(count)
        raise GGUFError(f"unknown GGUF value type {vtype}")

    def skip_array(self, etype: int, count: int) -> None:
        if etype in _SCALARS:
            self.pos += struct.calcsize(_SCALARS[etype]) * count
        elif etype == _STRING:
            for _ in range(count):
                self.skip_string()
        else:
            for _ in range(count):
                self.value(etype)


@dataclass
class _LongArray:
    length: int


def read_header(path: str | Path) -> GGUFHeader:
    """Parse the metadata and tensor index of a GGUF file."""
    path = Path(path)
    with open(path, "rb") as f:
        if f.read(4) != GGUF_MAGIC:
            raise GGUFError(f"{path.name} is not a GGUF file")
        f.seek(0)
        try:
            buf = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except ValueError as exc:  # empty file
            raise GGUFError(f"{path.name} is empty") from exc
    try:
        r = _Reader(buf)
        r.pos = 4
        version = r.scalar("<I")
        if version == 1:
            n_tensors, n_kv = r.scalar("<I"), r.scalar("<I")
        else:
            n_tensors, n_kv = r.scalar("<Q"), r.scalar("<Q")
        metadata: dict = {}
        lengths: dict = {}
        for _ in range(n_kv):
            key = r.string()
            value = r.value(r.scalar("<I"))
            if isinstance(value, _LongArray):
                lengths[key] = value.length
            else:
                metadata[key] = value
                if isinstance(value, list):
                    lengths[key] = len(value)
        tensors = []
        for _ in range(n_tensors):
            name = r.string()
            n_dims = r.scalar("<I")
            shape = tuple(r.scalar("<Q") for _ in range(n_dims))
            ggml_type = r.scalar("<I")
            r.scalar("<Q")  # data offset
            tensors.append(TensorInfo(name, shape, ggml_type))
        return GGUFHeader(version, metadata, tensors, lengths)
    except struct.error as exc:
        raise GGUFError(f"corrupt GGUF header in {path.name}: {exc}") from exc
    finally:
        buf.close()


# fill-in-the-middle token ids: today's keys, then the older names some files still use
_FIM_KEYS = (
    (
        "tokenizer.ggml.fim_pre_token_id",
        "tokenizer.ggml.fim_suf_token_id",
        "tokenizer.ggml.fim_mid_token_id",
    ),
    (
        "tokenizer.ggml.prefix_token_id",
        "tokenizer.ggml.suffix_token_id",
        "tokenizer.ggml.middle_token_id",
    ),
)


def fim_token_ids(header: GGUFHeader) -> tuple[int, int, int] | None:
    """(prefix, suffix, middle) token ids when the GGUF declares fill-in-the-middle tokens,
    else None: a completion then falls back to a plain continuation of the prefix."""
    for keys in _FIM_KEYS:
        ids = [header.get(key) for key in keys]
        if all(isinstance(i, int) and i >= 0 for i in ids):
            return ids[0], ids[1], ids[2]
    return None
