"""The catalog on a temporary models folder holding real GGUF files."""

from __future__ import annotations

import pytest

from lms_jupyter.models.catalog import (
    ModelCatalog,
    ModelNotFound,
    model_key_from_repo,
    params_label,
)
from lms_jupyter.models.gguf import GGUFError, read_header


def test_header_of_smollm(smollm_path):
    header = read_header(smollm_path)
    assert header.get("general.architecture") == "llama"
    assert header.get("llama.context_length") == 8192
    assert header.get("tokenizer.ggml.eos_token_id") == 2
    assert header.array_lengths["tokenizer.ggml.tokens"] == 49152
    assert 130e6 < sum(t.n_elements for t in header.tensors) < 140e6


def test_not_gguf(tmp_path):
    bad = tmp_path / "x.gguf"
    bad.write_bytes(b"NOPE" + b"\0" * 32)
    with pytest.raises(GGUFError):
        read_header(bad)
    truncated = tmp_path / "t.gguf"
    truncated.write_bytes(b"GGUF\x03\0\0\0" + b"\x01" * 10)
    with pytest.raises(GGUFError):
        read_header(truncated)


def test_key_rules():
    assert model_key_from_repo("Qwen2.5-7B-Instruct-GGUF") == "qwen2.5-7b-instruct"
    assert model_key_from_repo("gemma-3-270m") == "gemma-3-270m"
    assert params_label(134_515_008) == "135M"
    assert params_label(7_240_000_000) == "7.2B"


def test_embedded_model_always_listed(tmp_path):
    catalog = ModelCatalog(tmp_path / "missing")
    models = catalog.models()
    assert [m.key for m in models] == ["smollm2-135m-instruct"]
    info = models[0]
    variant = info.default_variant
    assert info.publisher == "HuggingFaceTB"
    assert info.type == "llm"
    assert variant.arch == "llama"
    assert variant.quantization == "Q4_1"
    assert variant.max_context_length == 8192
    assert variant.chat_template and "<|im_start|>" in variant.chat_template
    assert variant.supports_tools is False
    assert variant.params_string == "135M"
    assert variant.size_bytes == 98362432


def test_layout_variants_and_resolution(tmp_path, smollm_path, gemma_file):
    repo = tmp_path / "lmstudio-community" / "gemma-3-270m-GGUF"
    repo.mkdir(parents=True)
    (repo / "gemma-3-270m-Q4_K_M.gguf").symlink_to(gemma_file)
    # two quantizations of one model: a copy of SmolLM2 whose file_type says Q8_0
    smol = tmp_path / "HuggingFaceTB" / "SmolLM2-135M-Instruct-GGUF"
    smol.mkdir(parents=True)
    (smol / "SmolLM2-135M-Instruct-Q4_1.gguf").symlink_to(smollm_path)
    data = bytearray(smollm_path.read_bytes())
    key = b"general.file_type"
    at = data.index(key) + len(key) + 4  # skip the value-type field
    data[at : at + 4] = (7).to_bytes(4, "little")
    (smol / "SmolLM2-135M-Instruct-Q8_0.gguf").write_bytes(bytes(data))
    # the same repo name from another publisher gets a publisher-qualified key
    other = tmp_path / "bartowski" / "SmolLM2-135M-Instruct-GGUF"
    other.mkdir(parents=True)
    (other / "SmolLM2-135M-Instruct-Q4_1.gguf").symlink_to(smollm_path)
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "notes.gguf").write_text("not a model")
    (repo / "mmproj-model-f16.gguf").write_bytes(b"GGUF")
    catalog = ModelCatalog(tmp_path)
    keys = {m.key: m for m in catalog.models()}
    assert set(keys) == {"smollm2-135m-instruct", "gemma-3-270m", "bartowski/smollm2-135m-instruct"}
    smol_info = keys["smollm2-135m-instruct"]
    assert sorted(v.quantization for v in smol_info.variants) == ["Q4_1", "Q8_0"]
    assert catalog.resolve("smollm2-135m-instruct@q8_0")[1].quantization == "Q8_0"
    assert catalog.resolve("smollm2-135m-instruct")[1].quantization == "Q4_1"
    gemma = keys["gemma-3-270m"]
    assert gemma.publisher == "lmstudio-community"
    assert gemma.default_variant.quantization == "Q4_K_M"
    assert gemma.default_variant.chat_template is None
    assert gemma.default_variant.arch == "gemma3"
    assert gemma.default_variant.max_context_length == 32768
    info, variant = catalog.resolve("lmstudio-community/gemma-3-270m")
    assert info.key == "gemma-3-270m"
    info, variant = catalog.resolve("gemma-3-270m@q4_k_m")
    assert variant.quantization == "Q4_K_M"
    assert catalog.resolve("Gemma-3-270M-GGUF")[0].key == "gemma-3-270m"
    with pytest.raises(ModelNotFound):
        catalog.resolve("gemma-3-270m@q8_0")
    with pytest.raises(ModelNotFound) as err:
        catalog.resolve("gpt-4o")
    assert "smollm2-135m-instruct" in str(err.value)
