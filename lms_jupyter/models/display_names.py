"""A model's name for people ("SmolLM2 135M Instruct"), from its GGUF header and file name.

Why not ``general.name`` as it is: llama.cpp's converter writes one when the model card
gives none, by title-casing the repository's folder name, so SmolLM2 arrives as
"Smollm2 135M 8k Lc100K Mix1 Ep2" (basename, size label and a training-run finetune tag)
and Gemma 3 as "Gemma 3 270m". Such a generated name is recognised (it is nothing but
``general.basename``, ``general.size_label`` and ``general.finetune``) and replaced by
the file name, which keeps the publisher's spelling ("SmolLM2-135M-Instruct"), or by the
basename and size label. A name a person wrote is kept.
"""

from __future__ import annotations

import re
from pathlib import Path

# a quantization or split suffix: ".Q4_1", "-Q4_K_M", "-IQ2_XS", "-f16", "-00001-of-00003"
_SUFFIX = re.compile(r"([.\-_](i?q\d\w*|bf16|f16|f32|fp16|mxfp4)|-\d{5}-of-\d{5})$", re.IGNORECASE)
_SIZE = re.compile(r"^(\d+(?:\.\d+)?)([kmbt])$", re.IGNORECASE)  # 135m -> 135M
_ALNUM = re.compile(r"[^0-9a-z]+")
_WORDS = re.compile(r"[\s_\-]+|(?<!\d)\.|\.(?!\d)")  # keeps "0.6B" and "3.1" whole
_VERSION = re.compile(r"^v\d+$")


def _squash(text: str) -> str:
    return _ALNUM.sub("", text.lower())


def _word(word: str) -> str:
    """Capitalise an all-lowercase word, upper-case a size ("270m"), keep mixed case."""
    size = _SIZE.match(word)
    if size:
        return size.group(1) + size.group(2).upper()
    if _VERSION.match(word) or not word.islower():
        return word
    return word[:1].upper() + word[1:]


def clean_file_name(path: str | Path) -> str:
    """``SmolLM2-135M-Instruct.Q4_1.gguf`` -> ``SmolLM2 135M Instruct``."""
    stem = Path(path).name
    if stem.lower().endswith(".gguf"):
        stem = stem[:-5]
    while True:
        shorter = _SUFFIX.sub("", stem)
        if shorter == stem or not shorter:
            break
        stem = shorter
    return " ".join(_word(w) for w in _WORDS.split(stem) if w)


def _text(header, key: str) -> str:
    value = header.get(key)
    return value.strip() if isinstance(value, str) else ""


def is_generated(name: str, basename: str, size_label: str, finetune: str) -> bool:
    """True when ``name`` is only the converter's pieces (basename, size, finetune)."""
    if not name or not basename:
        return False
    squashed = _squash(name)
    pieces = [_squash(basename), _squash(size_label), _squash(finetune)]
    return squashed in ("".join(pieces), "".join(pieces[:2]), pieces[0])


def display_name(header, path: str | Path, fallback: str) -> str:
    """The name to show for a model file (``header``: its GGUF metadata, ``.get(key)``)."""
    name = _text(header, "general.name")
    basename = _text(header, "general.basename")
    size_label = _text(header, "general.size_label")
    finetune = _text(header, "general.finetune")
    if name and not is_generated(name, basename, size_label, finetune):
        return name
    from_file = clean_file_name(path)
    if basename and _squash(basename) in _squash(from_file):
        return from_file  # the publisher's own spelling of the same name
    if basename:
        words = [_word(w) for w in re.split(r"[\s_\-]+", basename) if w]
        if size_label and _squash(size_label) not in _squash(basename):
            words.append(_word(size_label))
        if finetune and finetune.replace("-", "").isalpha():  # "instruct", not "8k-ep2"
            words.extend(_word(w) for w in finetune.split("-"))
        return " ".join(words)
    return from_file or name or fallback
