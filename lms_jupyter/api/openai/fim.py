"""Fill-in-the-middle prompts for ``/v1/completions`` with OpenAI's ``suffix``.

An editor asking for code at the cursor knows what comes after it too. When the model's
GGUF declares fill-in-the-middle tokens (``tokenizer.ggml.fim_pre/suf/mid_token_id``, or
the older ``prefix/suffix/middle`` names), the prompt becomes the token sequence
``[BOS] <PRE> prefix <SUF> suffix <MID>`` (the prefix-suffix-middle order llama.cpp's
infill uses) and the model writes the middle. A model without them cannot use the suffix:
the prompt stays a plain continuation of the prefix and the suffix is ignored (logged;
OpenAI's response has no field to say so, the README documents it).

The user's text is tokenized without parsing special tokens, so code that happens to
contain ``<|im_start|>`` cannot inject control tokens between the FIM markers.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from lms_jupyter.errors import bad_request
from lms_jupyter.models.gguf import fim_token_ids

log = logging.getLogger(__name__)


def completion_suffix(body: dict) -> str | None:
    """``suffix``: the text after the insertion point, kept exactly (whitespace matters in
    code); absent or null means none."""
    value = body.get("suffix")
    if value is None:
        return None
    if not isinstance(value, str):
        raise bad_request("'suffix' must be a string (the text after the completion).", "suffix")
    return value


@dataclass(frozen=True)
class CompletionPrompt:
    """What the engine is given: the prompt and whether it still needs BOS."""

    prompt: str | list[int]
    add_bos: bool
    fill_in_middle: bool


def model_fim_tokens(model) -> tuple[int, int, int] | None:
    """The loaded model's (prefix, suffix, middle) token ids, from its GGUF header."""
    variant = getattr(model, "variant", None)
    header = getattr(variant, "header", None)
    return None if header is None else fim_token_ids(header)


def _bos_id(model) -> int | None:
    value = model.variant.header.get("tokenizer.ggml.bos_token_id")
    return value if isinstance(value, int) and value >= 0 else None


def fim_prompt_tokens(
    tokens: tuple[int, int, int], prefix: list[int], suffix: list[int], bos: int | None
) -> list[int]:
    """``[BOS] <PRE> prefix <SUF> suffix <MID>`` as token ids."""
    pre, suf, mid = tokens
    head = [bos] if bos is not None else []
    return [*head, pre, *prefix, suf, *suffix, mid]


def completion_prompt(
    model, prompt: str | list[int], suffix: str | None, adds_bos: bool
) -> CompletionPrompt:
    """The engine prompt of a text completion: fill-in-the-middle when a suffix was sent
    and the model has FIM tokens, else the prompt as given."""
    if suffix is None:
        return CompletionPrompt(prompt, adds_bos, False)
    tokens = model_fim_tokens(model)
    if tokens is None:
        log.info(
            "completion for %s: the model declares no fill-in-the-middle tokens, "
            "so the suffix (%d chars) is ignored and the prompt is continued",
            model.identifier,
            len(suffix),
        )
        return CompletionPrompt(prompt, adds_bos, False)
    prefix_ids = (
        list(prompt)
        if isinstance(prompt, list)
        else model.tokenize(prompt, add_bos=False, special=False)
    )
    suffix_ids = model.tokenize(suffix, add_bos=False, special=False) if suffix else []
    ids = fim_prompt_tokens(tokens, prefix_ids, suffix_ids, _bos_id(model) if adds_bos else None)
    log.info(
        "completion for %s: fill-in-the-middle prompt (%d prefix and %d suffix tokens)",
        model.identifier,
        len(prefix_ids),
        len(suffix_ids),
    )
    return CompletionPrompt(ids, False, True)
