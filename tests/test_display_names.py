"""Display names for people: the converter's title-cased ``general.name`` is replaced by
the file's own spelling or basename + size label; a name a person wrote is kept."""

from __future__ import annotations

import tempfile

from lms_jupyter.api.views import display_name as view_display_name
from lms_jupyter.models.catalog import ModelCatalog
from lms_jupyter.models.display_names import clean_file_name, display_name, is_generated


def test_embedded_smollm2_gets_its_real_name():
    info = next(
        m for m in ModelCatalog(tempfile.mkdtemp()).models() if m.key == "smollm2-135m-instruct"
    )
    header = info.default_variant.header
    assert header.get("general.name") == "Smollm2 135M 8k Lc100K Mix1 Ep2"  # the GGUF's
    assert view_display_name(info) == "SmolLM2 135M Instruct"


def test_generated_names_are_recognised():
    assert is_generated("Smollm2 135M 8k Lc100K Mix1 Ep2", "smollm2", "135M", "8k-lc100k-mix1-ep2")
    assert is_generated("Gemma 3 270m", "gemma-3", "270M", "")
    assert not is_generated("SmolLM2 135M Instruct", "smollm2", "135M", "8k-lc100k-mix1-ep2")
    assert not is_generated("Qwen3 Embedding 0.6B", "", "0.6B", "")


def test_display_name_rules():
    gemma = {
        "general.name": "Gemma 3 270m",
        "general.basename": "gemma-3",
        "general.size_label": "270M",
    }
    assert display_name(gemma, "gemma-3-270m-Q4_K_M.gguf", "k") == "Gemma 3 270M"
    # the file name does not say it: basename + size label (+ a finetune that is a word)
    assert display_name({**gemma, "general.finetune": "it"}, "model.gguf", "k") == "Gemma 3 270M It"
    assert (
        display_name({**gemma, "general.finetune": "8k-ep2"}, "model.gguf", "k") == "Gemma 3 270M"
    )
    written = {"general.name": "Qwen3 Embedding 0.6B", "general.basename": "qwen3"}
    assert display_name(written, "whatever-Q8_0.gguf", "k") == "Qwen3 Embedding 0.6B"
    assert (
        display_name({}, "Meta-Llama-3.1-8B-Instruct-IQ2_XS.gguf", "k")
        == "Meta Llama 3.1 8B Instruct"
    )
    assert display_name({}, "", "the-key") == "the-key"


def test_clean_file_name():
    assert clean_file_name("SmolLM2-135M-Instruct.Q4_1.gguf") == "SmolLM2 135M Instruct"
    assert clean_file_name("SmolLM2-Split-Q4_1-00001-of-00002.gguf") == "SmolLM2 Split"
    assert clean_file_name("all-MiniLM-L6-v2-F16.gguf") == "All MiniLM L6 v2"
    assert clean_file_name("Qwen3-Embedding-0.6B-Q8_0.gguf") == "Qwen3 Embedding 0.6B"
