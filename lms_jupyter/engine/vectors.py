"""Vector math on embeddings (NumPy only, no llama.cpp), shared by the worker that computes
them and the API that trims them to ``dimensions``."""

from __future__ import annotations


def l2_normalise(vectors):
    """Rows scaled to length 1 (zero rows stay zero)."""
    import numpy as np

    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / np.where(norms > 0, norms, 1.0)


def truncate_dimensions(vectors, dimensions: int | None):
    """Matryoshka truncation: the first ``dimensions`` values, re-normalised."""
    if dimensions is None or dimensions >= vectors.shape[-1]:
        return vectors
    return l2_normalise(vectors[..., :dimensions])
