"""FIM token ids read from real GGUF headers (issue 25's completion prompt choice)."""

from lms_jupyter.engine.manager import ModelManager
from lms_jupyter.models.gguf import GGUFHeader, fim_token_ids


def test_smollm2_declares_no_fim_tokens():
    (info,) = [i for i in ModelManager().catalog.models() if i.key == "smollm2-135m-instruct"]
    assert fim_token_ids(info.variants[0].header) is None


def test_current_and_older_key_names():
    new = GGUFHeader(
        3,
        {
            "tokenizer.ggml.fim_pre_token_id": 1,
            "tokenizer.ggml.fim_suf_token_id": 2,
            "tokenizer.ggml.fim_mid_token_id": 3,
        },
    )
    old = GGUFHeader(
        3,
        {
            "tokenizer.ggml.prefix_token_id": 4,
            "tokenizer.ggml.suffix_token_id": 5,
            "tokenizer.ggml.middle_token_id": 6,
        },
    )
    partial = GGUFHeader(3, {"tokenizer.ggml.fim_pre_token_id": 1})
    assert fim_token_ids(new) == (1, 2, 3)
    assert fim_token_ids(old) == (4, 5, 6)
    assert fim_token_ids(partial) is None
