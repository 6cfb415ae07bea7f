"""The one boundary every loaded model sits behind: :class:`ModelInstance`.

A model can live in a worker process on this machine (:mod:`.worker`), on a remote engine
(:mod:`.remote_models`), or in another Jupyter server a kernel is connected to
(``client.connected``). Callers (the API, the manager, the fronts) hold a
``ModelInstance`` and read what it can do from :attr:`ModelInstance.capabilities`; they
never ask which kind it is. The enums here are the vocabulary shared by the engine, the
API and the sidebar's types (``labextension/src/api.ts``): they are ``str`` enums, so they
compare equal to, and serialise as, the strings LM Studio puts on the wire.
"""

from __future__ import annotations

import enum
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Protocol, runtime_checkable


class _WireEnum(str, enum.Enum):
    """A ``str`` enum whose ``str()`` and f-string form is its wire value."""

    __str__ = str.__str__
    # mypy reads str's method as already bound here; at runtime it is str's own __format__
    __format__ = str.__format__  # type: ignore[assignment]


class ModelType(_WireEnum):
    """LM Studio's /api/v0 ``type`` of a model."""

    LLM = "llm"
    EMBEDDINGS = "embeddings"


class InstanceStatus(_WireEnum):
    """What an instance is doing (``lms ps`` STATUS, ``/api/v0/ps`` ``status``)."""

    IDLE = "idle"
    PROCESSING_PROMPT = "processingPrompt"
    GENERATING = "generating"
    EMBEDDING = "computingEmbedding"
    CRASHED = "crashed"  # its worker process died; the next request reloads it


class JobKind(_WireEnum):
    """How a job uses a model's context (see :mod:`.batching`)."""

    SLOT = "slot"  # a generation in one of the slots, decoded with the others
    INLINE = "inline"  # between decode steps, in its own context (embeddings)
    EXCLUSIVE = "exclusive"  # alone, with the slots idle (speculative decoding)


class StopReason(_WireEnum):
    """LM Studio's stop reasons (LLMPredictionStats.ts)."""

    EOS = "eosFound"
    STOP_STRING = "stopStringFound"
    MAX_TOKENS = "maxPredictedTokensReached"
    CONTEXT = "contextLengthReached"
    USER = "userStopped"
    FAILED = "failed"


@dataclass(frozen=True)
class Capabilities:
    """What an instance can do, declared by the instance itself.

    ``renders_prompt``: the instance applies its own chat template to OpenAI-style
    messages (a remote engine), so the API hands it messages, not a rendered prompt.
    ``vocabulary``: it can tokenize and detokenize here (``tokenize``/``detokenize``).
    ``draft``: it can run speculative decoding with a draft model.
    ``restartable``: a crash of it can be followed by a reload of the same settings.
    ``managed_here``: ``unload`` frees it on this machine (False: its engine owns it).
    """

    chat: bool = True
    completion: bool = True
    embeddings: bool = False
    tools: bool = True
    draft: bool = False
    renders_prompt: bool = False
    vocabulary: bool = False
    restartable: bool = False
    managed_here: bool = True


@runtime_checkable
class ModelInstance(Protocol):
    """A loaded model, wherever it runs.

    Identity and listing: ``identifier``, ``info``, ``variant``, ``config``, ``ttl``,
    ``jit``, ``last_used``, ``loaded_at``, ``estimated_bytes``, ``status``, ``queued``,
    ``busy``, ``slots`` (its ``parallel``, None when unknown), ``crash`` (a
    :class:`~.worker.crash.CrashReport` or None), ``snapshot()``.
    Work: ``generate(request, channel)`` queues a generation whose engine events go to
    ``channel``; ``embed(texts, truncate)`` returns a Future of an EmbeddingResult.
    """

    identifier: str
    capabilities: Capabilities

    @property
    def status(self) -> str: ...

    @property
    def queued(self) -> int: ...

    @property
    def busy(self) -> bool: ...

    @property
    def slots(self) -> int | None: ...

    @property
    def embedding_only(self) -> bool: ...

    def snapshot(self) -> dict: ...

    def generate(self, request, channel) -> None: ...

    def embed(self, texts: list, truncate: bool = False) -> Future: ...


def local_snapshot(model) -> dict:
    """The ``lms ps`` row of a model loaded on this machine (from its catalog entry and
    load configuration), shared by the worker proxy and the engine inside the worker."""
    return {
        "identifier": model.identifier,
        "modelKey": model.info.key,
        "path": str(model.variant.path),
        "type": model.info.type,
        "status": model.status,
        "queued": model.queued,
        "contextLength": model.config.context_length,
        "ttlSeconds": model.ttl,
        "parallel": None if model.embedding_only else model.config.parallel,
        "jit": model.jit,
        "lastUsedTime": model.last_used,
        "loadedAt": model.loaded_at,
        "sizeBytes": model.variant.size_bytes,
        "quantization": model.variant.quantization,
        "arch": model.variant.arch,
    }
