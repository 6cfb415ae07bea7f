"""Embeddings on llama.cpp: one embedding context per loaded model, many texts per decode.

A dedicated embedding model (BERT, nomic-bert, EmbeddingGemma, Qwen3-Embedding, ...) gets
only this context: its own tokenizer (``llama_tokenize`` with the GGUF's add_bos / add_eos /
add_sep, so BERT gives ``[CLS] ... [SEP]``), its own pooling from GGUF ``pooling_type``
(mean, CLS or last token, computed by llama.cpp and read with
``llama_get_embeddings_seq``), and L2-normalised rows. A chat model asked for embeddings
gets a second context on the same weights with mean pooling (what lms-jupyter always did).

Inputs are texts or token ids. Token ids are embedded exactly as given (the model's
special tokens are not added around them: a client that wants ``[CLS] ... [SEP]`` sends
them, as the model's own tokenizer does), after a check against the vocabulary.

Inputs are packed into batches: up to :data:`MAX_SEQUENCES` sequences and
:data:`PACK_TOKENS` tokens per ``llama_decode`` (one sequence id each, positions from 0),
with the context's memory cleared between batches. ``n_batch`` and ``n_ubatch`` are both the
longest allowed input, because llama.cpp cannot split a sequence of a non-causal (encoder)
model across micro-batches (it aborts the process if asked to).

Nothing here is thread-safe: an :class:`Embedder` is used by its model's worker thread only,
and llama.cpp's notes while creating one go to Python logging (``engine.local.llama``).
"""

from __future__ import annotations

import logging
import threading

from lms_jupyter.engine.events import EmbeddingResult
from lms_jupyter.engine.vectors import l2_normalise, truncate_dimensions  # noqa: F401
from lms_jupyter.errors import APIError, bad_request

log = logging.getLogger(__name__)

POOLING_NONE, POOLING_MEAN, POOLING_CLS, POOLING_LAST, POOLING_RANK = 0, 1, 2, 3, 4
POOLING_NAMES = {
    POOLING_NONE: "none",
    POOLING_MEAN: "mean",
    POOLING_CLS: "cls",
    POOLING_LAST: "last",
    POOLING_RANK: "rank",
}
MAX_SEQUENCES = 64  # sequences per llama_decode
PACK_TOKENS = 512  # tokens per llama_decode when packing several sequences
CHAT_MODEL_MAX_TOKENS = 2048  # longest input when a chat model embeds (mean pooling)

_backend_lock = threading.Lock()
_backend_ready = False


def model_pooling(header) -> int:
    """The pooling a GGUF asks for (``{arch}.pooling_type``); mean when it names none."""
    arch = header.get("general.architecture", "")
    value = header.get(f"{arch}.pooling_type")
    return value if value in (POOLING_MEAN, POOLING_CLS, POOLING_LAST) else POOLING_MEAN


def _init_backend() -> None:
    """llama.cpp's backend, once per process (what ``Llama`` does), with its log lines
    routed to Python logging."""
    global _backend_ready
    with _backend_lock:
        if _backend_ready:
            return
        import llama_cpp

        from lms_jupyter.engine.local.llama import route_llama_logs

        route_llama_logs()
        llama_cpp.llama_backend_init()
        _backend_ready = True


class Embedder:
    """An embedding context on a llama.cpp model, with its tokenizer and batching."""

    def __init__(
        self,
        model_ptr,
        *,
        pooling: int,
        max_tokens: int,
        n_threads: int,
        flash_attention: bool = True,
        owned_model=None,
        label: str = "",
    ):
        import llama_cpp

        _init_backend()
        self.label = label
        self._owned_model = owned_model  # an _internals.LlamaModel we must close, or None
        self._model = model_ptr
        self._vocab = llama_cpp.llama_model_get_vocab(model_ptr)
        self.n_vocab = int(llama_cpp.llama_vocab_n_tokens(self._vocab))
        self.pooling = pooling
        self.max_tokens = max_tokens
        n_embd_out = getattr(llama_cpp, "llama_model_n_embd_out", llama_cpp.llama_model_n_embd)
        self.n_embd = int(n_embd_out(model_ptr))
        self.n_seq_max = max(1, min(MAX_SEQUENCES, max_tokens))
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = max_tokens  # all sequences of a batch share it (kv_unified)
        params.n_batch = max_tokens
        params.n_ubatch = max_tokens  # a sequence is never split across micro-batches
        params.n_seq_max = self.n_seq_max
        params.kv_unified = True
        params.n_threads = params.n_threads_batch = n_threads
        params.embeddings = True
        params.pooling_type = pooling
        params.flash_attn_type = (
            llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED
            if flash_attention
            else llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED
        )
        params.no_perf = True
        self._ctx = llama_cpp.llama_init_from_model(model_ptr, params)
        if not self._ctx:
            raise RuntimeError("llama.cpp could not create an embedding context.")
        if llama_cpp.llama_pooling_type(self._ctx) != pooling:
            self.close()
            raise RuntimeError("llama.cpp did not accept the pooling type.")
        self._batch = llama_cpp.llama_batch_init(max_tokens, 0, 1)
        self._prefix, self._suffix = self._special_tokens()
        log.info(
            "Embedding context for %s: %d dims, %s pooling, inputs up to %d tokens, "
            "special tokens %s + text + %s",
            label or "model",
            self.n_embd,
            POOLING_NAMES.get(pooling, pooling),
            max_tokens,
            self._prefix,
            self._suffix,
        )

    # -- construction ------------------------------------------------------------------
    @classmethod
    def load(
        cls,
        path,
        *,
        context_length: int,
        n_threads: int,
        n_gpu_layers: int = 0,
        use_mmap: bool = True,
        flash_attention: bool = True,
        pooling: int | None = None,
        label: str = "",
    ) -> Embedder:
        """Load a dedicated embedding model: its weights and only an embedding context."""
        import llama_cpp
        from llama_cpp._internals import LlamaModel

        _init_backend()
        params = llama_cpp.llama_model_default_params()
        params.n_gpu_layers = n_gpu_layers
        params.use_mmap = use_mmap
        model = LlamaModel(path_model=str(path), params=params, verbose=False)
        try:
            if pooling is None:
                pooling = POOLING_MEAN
            return cls(
                model.model,
                pooling=pooling,
                max_tokens=context_length,
                n_threads=n_threads,
                flash_attention=flash_attention,
                owned_model=model,
                label=label,
            )
        except BaseException:
            model.close()
            raise

    @classmethod
    def for_chat_model(
        cls,
        llm,
        *,
        context_length: int,
        n_threads: int,
        flash_attention: bool = True,
        label: str = "",
    ) -> Embedder:
        """A mean-pooling context on a loaded chat model's weights (no second load)."""
        return cls(
            llm._model.model,
            pooling=POOLING_MEAN,
            max_tokens=min(context_length, CHAT_MODEL_MAX_TOKENS),
            n_threads=n_threads,
            flash_attention=flash_attention,
            label=label,
        )

    def close(self) -> None:
        import llama_cpp

        if getattr(self, "_batch", None) is not None:
            llama_cpp.llama_batch_free(self._batch)
            self._batch = None
        if getattr(self, "_ctx", None):
            llama_cpp.llama_free(self._ctx)
            self._ctx = None
        if self._owned_model is not None:
            self._owned_model.close()
            self._owned_model = None

    # -- tokens --------------------------------------------------------------------------
    def tokenize(self, text: str, special: bool = True) -> list[int]:
        """The model's own tokens for ``text``; ``special`` adds what the GGUF says
        (BOS/CLS, EOS/SEP). Special-token text inside ``text`` ("[SEP]") becomes that
        token, as in the original tokenizer and llama-server (an embedding cannot be
        hijacked the way a chat prompt can)."""
        import llama_cpp

        data = text.encode("utf-8")
        size = len(data) + 8
        for _ in range(2):
            buffer = (llama_cpp.llama_token * size)()
            n = llama_cpp.llama_tokenize(self._vocab, data, len(data), buffer, size, special, True)
            if n >= 0:
                return list(buffer[:n])
            size = -n
        raise RuntimeError("Tokenization failed.")

    def _special_tokens(self) -> tuple[list[int], list[int]]:
        """The tokens the model adds before and after a text (from a probe)."""
        plain = self.tokenize("a", special=False)
        full = self.tokenize("a", special=True)
        for start in range(len(full) - len(plain) + 1):
            if full[start : start + len(plain)] == plain:
                return full[:start], full[start + len(plain) :]
        return [], []

    def prepare(self, inputs: list, truncate: bool = False) -> tuple[list[list[int]], list[int]]:
        """Tokens per input (a text, or token ids checked against the vocabulary), checked
        against :attr:`max_tokens`.

        Too long: a 400 ``context_length_exceeded`` naming the input, or with ``truncate``
        a text cut so that the special tokens (e.g. the final ``[SEP]``) stay, and token
        ids cut to the first :attr:`max_tokens`.
        """
        lists, truncated = [], []
        head, tail = len(self._prefix), len(self._suffix)
        for i, item in enumerate(inputs):
            is_text = isinstance(item, str)
            tokens = self.tokenize(item) if is_text else self._checked_ids(item, i)
            if len(tokens) > self.max_tokens:
                if not truncate:
                    raise APIError(
                        f"input[{i}] is {len(tokens)} tokens long, but the model "
                        f'"{self.label}" embeds at most {self.max_tokens} tokens per input. '
                        'Shorten it, or send "truncate": true to cut it.',
                        400,
                        "invalid_request_error",
                        f"input[{i}]",
                        "context_length_exceeded",
                    )
                if is_text:
                    keep = self.max_tokens - head - tail
                    tokens = (
                        tokens[:head]
                        + tokens[head : len(tokens) - tail][:keep]
                        + tokens[len(tokens) - tail :]
                    )
                else:
                    tokens = tokens[: self.max_tokens]
                truncated.append(i)
            if not tokens:
                raise bad_request(f"input[{i}] has no tokens.", f"input[{i}]")
            lists.append(tokens)
        return lists, truncated

    def _checked_ids(self, ids: list[int], i: int) -> list[int]:
        bad = [t for t in ids if not 0 <= t < self.n_vocab]
        if bad:
            raise bad_request(
                f"input[{i}] has token ids outside the vocabulary of "
                f'"{self.label}" (0..{self.n_vocab - 1}): {bad[:5]}. Token ids '
                "are the model's own; ids from another tokenizer (tiktoken's, "
                "as langchain-openai sends by default) mean other words: send "
                "text instead.",
                "input",
            )
        return list(ids)

    # -- embedding -----------------------------------------------------------------------
    def embed(self, inputs: list, truncate: bool = False) -> EmbeddingResult:
        """Vectors for texts and/or token-id lists (one batching path for both)."""
        lists, truncated = self.prepare(inputs, truncate)
        vectors = self.embed_tokens(lists)
        return EmbeddingResult(vectors, sum(len(t) for t in lists), truncated)

    def batches(self, lengths: list[int]) -> list[list[int]]:
        """Input indices grouped per decode: consecutive inputs, at most
        :data:`MAX_SEQUENCES` of them and :data:`PACK_TOKENS` tokens (a longer input
        goes alone)."""
        budget = max(min(PACK_TOKENS, self.max_tokens), 1)
        groups: list[list[int]] = []
        current: list[int] = []
        used = 0
        for i, n in enumerate(lengths):
            if current and (used + n > budget or len(current) >= self.n_seq_max):
                groups.append(current)
                current, used = [], 0
            current.append(i)
            used += n
        if current:
            groups.append(current)
        return groups

    def embed_tokens(self, token_lists: list[list[int]]):
        """Pooled, L2-normalised vectors (float32 array, one row per token list)."""
        import numpy as np

        out = np.zeros((len(token_lists), self.n_embd), dtype=np.float32)
        for group in self.batches([len(t) for t in token_lists]):
            self._decode_group(group, token_lists, out)
        return l2_normalise(out)

    def _decode_group(self, group: list[int], token_lists: list[list[int]], out) -> None:
        import llama_cpp
        import numpy as np

        batch = self._batch
        n = sum(len(token_lists[i]) for i in group)
        tokens = np.ctypeslib.as_array(batch.token, shape=(self.max_tokens,))
        positions = np.ctypeslib.as_array(batch.pos, shape=(self.max_tokens,))
        n_seq_id = np.ctypeslib.as_array(batch.n_seq_id, shape=(self.max_tokens,))
        logits = np.ctypeslib.as_array(batch.logits, shape=(self.max_tokens,))
        k = 0
        for seq, i in enumerate(group):
            ids = token_lists[i]
            tokens[k : k + len(ids)] = ids
            positions[k : k + len(ids)] = np.arange(len(ids))
            for j in range(k, k + len(ids)):
                batch.seq_id[j][0] = seq
            k += len(ids)
        n_seq_id[:n] = 1
        logits[:n] = 1  # pooled embeddings need every token as an output
        batch.n_tokens = n
        memory = llama_cpp.llama_get_memory(self._ctx)
        if memory:
            llama_cpp.llama_memory_clear(memory, True)
        code = llama_cpp.llama_decode(self._ctx, batch)
        if code != 0:
            raise RuntimeError(f"llama_decode failed ({code}) on {n} tokens.")
        for seq, i in enumerate(group):
            pointer = llama_cpp.llama_get_embeddings_seq(self._ctx, seq)
            if not pointer:
                raise RuntimeError(f"llama.cpp returned no embedding for sequence {seq}.")
            out[i] = np.ctypeslib.as_array(pointer, shape=(self.n_embd,))
