"""Every touch of llama-cpp-python's internals, in one module.

llama-cpp-python's high-level ``Llama`` covers loading and the token loop, but the
project needs a few things it does not expose: the exact bytes of a token (its helper
pads them), load progress and cancellation (llama.cpp has a callback, ``Llama()`` takes
none), interrupting a long prefill (llama.cpp's abort callback), end-of-generation and
control-token checks, and llama.cpp's own log lines (printed raw to stderr by default).
Keeping them here means an upgrade of llama-cpp-python is checked in one file, and the
rest of the engine speaks plain Python.

Importing this module does not import llama_cpp; each function does, on first use.
"""

from __future__ import annotations

import ctypes
import logging
import threading
from collections.abc import Callable
from typing import Any

from lms_jupyter.engine.options import KV_CACHE_TYPES, LoadCancelled  # noqa: F401

log = logging.getLogger(__name__)
llama_log = logging.getLogger("lms_jupyter.llama_cpp")

_LOAD_LOCK = threading.Lock()
_routing_lock = threading.Lock()
_routed = False
_log_callback = None  # keeps the ctypes callback alive for the life of the process
# (line, level) -> None: where complete lines go instead of Python logging (a worker's
# stderr buffer); levels are ggml's: 1 debug, 2 info, 3 warning, 4 error
_line_sink: Callable[[str, int], None] | None = None
GGML_LOG_WARN = 3
_GGML_LOG_CONT = 5  # the rest of the line before it


def send_llama_lines_to(sink: Callable[[str, int], None] | None) -> None:
    """Give llama.cpp's complete log lines, with their level, to ``sink`` instead of the
    ``lms_jupyter.llama_cpp`` logger (``None``: back to the logger)."""
    global _line_sink
    _line_sink = sink


def route_llama_logs() -> None:
    """Send llama.cpp's log lines to Python logging (logger ``lms_jupyter.llama_cpp``,
    debug level) instead of the terminal, once per process.

    llama-cpp-python prints them to stderr and, when ``verbose=False``, silences a load
    by pointing the process's stdout/stderr file descriptors at /dev/null for its
    duration, which also swallows whatever other threads (the Jupyter server) print
    meanwhile. With the lines routed here nothing reaches the terminal raw, so that
    redirect is switched off.
    """
    global _routed, _log_callback
    if _routed:
        return
    with _routing_lock:
        if _routed:
            return
        import llama_cpp
        import llama_cpp.llama as llama_module

        pending: list[str] = []
        line_level = [0]

        @llama_cpp.llama_log_callback
        def on_log(level, text, _user_data):
            try:
                if not pending and level != _GGML_LOG_CONT:
                    line_level[0] = level
                pending.append(text.decode("utf-8", errors="replace"))
                if pending[-1].endswith("\n"):
                    line = "".join(pending).rstrip()
                    pending.clear()
                    if line and _line_sink is not None:
                        _line_sink(line, line_level[0])
                    elif line:
                        llama_log.debug("%s", line)
            except Exception:  # noqa: BLE001 - a C callback must never raise
                pass

        _log_callback = on_log
        llama_cpp.llama_log_set(on_log, ctypes.c_void_p(0))

        class _NoRedirect:
            def __init__(self, disable: bool = True):
                pass

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                return False

        # a deliberate patch of llama_cpp's class (its stand-in has the same interface)
        llama_module.suppress_stdout_stderr = _NoRedirect  # type: ignore[misc,assignment]
        _routed = True


def warm_up(model_path: str) -> None:
    """Load only the vocabulary of a GGUF and free it at once.

    A process's first load of a model costs 15-25 ms more than its later ones (SmolLM2:
    about 120 against 100 ms): the loader's heap is not yet faulted in (19.5k page faults
    against 15k). A spare worker does this while it waits, so the load a user asks for
    costs what a later one does; the spare keeps those pages (about 15 MiB) until then.
    A file that does not load is no error here: the real load will report it.
    """
    import llama_cpp.llama_cpp as lib

    route_llama_logs()
    params = lib.llama_model_default_params()
    params.vocab_only = True
    model = lib.llama_model_load_from_file(model_path.encode(), params)
    if model:
        lib.llama_model_free(model)


def load_llama(
    model_path: str,
    *,
    progress: Callable[[float], bool] | None = None,
    n_seq_max: int = 1,
    **kwargs,
):
    """A ``Llama`` for ``model_path``; ``progress(fraction)`` is called while the weights
    load and may return False to cancel (then :class:`LoadCancelled` is raised).

    ``n_seq_max`` sequences share the context's KV cache (``kv_unified``: ``n_ctx`` cells
    in all, not per sequence), so the batching scheduler decodes every slot in this one
    context and ``parallel: 4`` costs no more KV memory than ``parallel: 1``.

    One load at a time: llama.cpp's progress callback and the context's sequence count
    are set through llama-cpp-python's params factories (``Llama()`` takes neither),
    which are swapped for the duration of this load only.
    """
    import llama_cpp.llama_cpp as lib
    from llama_cpp import Llama

    route_llama_logs()
    callback = None
    cancelled = threading.Event()
    if progress is not None:

        def on_progress(fraction, _user_data):
            try:
                keep_going = progress(max(0.0, min(1.0, float(fraction))))
            except Exception:  # noqa: BLE001 - a C callback must never raise
                keep_going = True
            if keep_going is False:
                cancelled.set()
                return False
            return True

        callback = lib.llama_progress_callback(on_progress)
    with _LOAD_LOCK:
        original = lib.llama_model_default_params

        def params_with_progress():
            params = original()
            if callback is not None:
                params.progress_callback = callback
            return params

        original_context = lib.llama_context_default_params

        def context_params():
            params = original_context()
            params.n_seq_max = max(1, n_seq_max)
            params.kv_unified = True
            return params

        lib.llama_model_default_params = params_with_progress
        lib.llama_context_default_params = context_params
        try:
            llm = Llama(model_path=model_path, verbose=False, **kwargs)
        except Exception:
            if cancelled.is_set():
                raise LoadCancelled() from None
            raise
        finally:
            lib.llama_model_default_params = original
            lib.llama_context_default_params = original_context
    if progress is not None:
        progress(1.0)
    return llm


def prompt_text(llm, prompt) -> str | None:
    """A token-id prompt as text (special tokens included), None for a text prompt."""
    if isinstance(prompt, str):
        return None
    n_vocab = llm.n_vocab()
    raw = b"".join(token_bytes(llm, t, special=True) for t in prompt if 0 <= t < n_vocab)
    return raw.decode("utf-8", errors="replace")


def supports_gpu_offload() -> bool:
    """Whether this llama.cpp build can offload layers to a GPU."""
    import llama_cpp

    return bool(llama_cpp.llama_supports_gpu_offload())


def token_bytes(llm, token: int, special: bool = False) -> bytes:
    """The exact bytes of one token (llama-cpp-python's helper pads them with NULs)."""
    import llama_cpp

    buf = ctypes.create_string_buffer(64)
    n = llama_cpp.llama_token_to_piece(llm._model.vocab, token, buf, 64, 0, special)
    if n < 0:
        buf = ctypes.create_string_buffer(-n)
        n = llama_cpp.llama_token_to_piece(llm._model.vocab, token, buf, -n, 0, special)
    return buf.raw[: max(n, 0)]


def tokenize(llm, text: str, *, add_bos: bool, special: bool = True) -> list[int]:
    """Token ids of ``text``; ``special`` parses control-token text such as <|im_end|>."""
    return llm.tokenize(text.encode("utf-8"), add_bos=add_bos, special=special)


def keep_prefix(llm, tokens: list[int]) -> int:
    """Keep the KV cache of the longest prefix ``llm`` already holds of ``tokens`` (at
    most all but the last token, whose logits must be computed afresh) and drop the rest;
    returns how many prompt tokens that saves. ``Llama.generate`` then evaluates only the
    remainder. Models whose cache cannot be cut partially (sliding-window layers) keep
    nothing."""
    import numpy as np

    n = min(llm.n_tokens, len(tokens) - 1)
    if n <= 0:
        return 0
    same = llm.input_ids[:n] == np.asarray(tokens[:n], dtype=llm.input_ids.dtype)
    keep = n if same.all() else int(np.argmin(same))
    if keep <= 0 or not llm._ctx.kv_cache_seq_rm(-1, keep, -1):
        return 0
    llm.n_tokens = keep
    return keep


def is_eog(llm, token: int) -> bool:
    """Whether ``token`` ends generation (EOS, EOT, <|im_end|>, ... per the vocabulary)."""
    import llama_cpp

    return bool(llama_cpp.llama_vocab_is_eog(llm._model.vocab, token))


def is_control_text(llm, text: str) -> bool:
    """Whether ``text`` holds a control token: such tokens have text only when rendered
    as special (e.g. <|python_tag|>, [TOOL_CALLS], <|channel|>)."""
    try:
        ids = tokenize(llm, text, add_bos=False, special=True)
    except Exception:  # noqa: BLE001 - text the vocabulary cannot hold
        return False
    return any(token_bytes(llm, t, True) and not token_bytes(llm, t, False) for t in ids)


class PrefillAbort:
    """Lets a cancel interrupt a long prompt prefill inside ``llama_decode``.

    llama.cpp calls the abort callback for every graph node, and each call takes the
    GIL; armed during decoding it would make every token wait on the event loop's
    thread. So it is armed only while a prompt is evaluated; between tokens the token
    loop checks for cancellation itself.
    """

    def __init__(self, llm, should_abort: Callable[[], bool]):
        import llama_cpp

        self._llm = llm
        self._callback = llama_cpp.ggml_abort_callback(lambda _data: bool(should_abort()))
        self._none = llama_cpp.ggml_abort_callback()

    def arm(self, enabled: bool) -> None:
        import llama_cpp

        ctx = self._llm._ctx.ctx
        llama_cpp.llama_set_abort_callback(ctx, self._callback if enabled else self._none, None)


# -- the low-level context the batching scheduler drives -------------------------------------


class TokenBatch:
    """A ``llama_batch`` over numpy buffers, one sequence id per token.

    ``llama_batch_init`` mallocs a seq_id array per token that Python can only fill one
    element at a time; here every field is a numpy array the scheduler fills with slice
    assignments, and the struct just points at them.
    """

    def __init__(self, capacity: int):
        import llama_cpp
        import numpy as np

        self.capacity = capacity
        self.token = np.zeros(capacity, dtype=np.int32)
        self.pos = np.zeros(capacity, dtype=np.int32)
        self.n_seq_id = np.ones(capacity, dtype=np.int32)
        self.seq = np.zeros(capacity, dtype=np.int32)
        self.logits = np.zeros(capacity, dtype=np.int8)
        int_p = ctypes.POINTER(ctypes.c_int32)
        base = self.seq.ctypes.data
        self._seq_ptrs = (int_p * capacity)(
            *[ctypes.cast(base + 4 * i, int_p) for i in range(capacity)]
        )
        # Any: llama_cpp declares the pointer fields (token, pos, ...) as ctypes arrays
        batch: Any = llama_cpp.llama_batch()
        batch.n_tokens = 0
        batch.token = self.token.ctypes.data_as(ctypes.POINTER(llama_cpp.llama_token))
        batch.embd = ctypes.POINTER(ctypes.c_float)()
        batch.pos = self.pos.ctypes.data_as(ctypes.POINTER(llama_cpp.llama_pos))
        batch.n_seq_id = self.n_seq_id.ctypes.data_as(int_p)
        batch.seq_id = ctypes.cast(self._seq_ptrs, ctypes.POINTER(int_p))
        batch.logits = self.logits.ctypes.data_as(ctypes.POINTER(ctypes.c_int8))
        self.batch = batch
        self.n = 0

    @property
    def room(self) -> int:
        return self.capacity - self.n

    def clear(self) -> None:
        self.logits[: self.n] = 0
        self.n = 0

    def add(self, tokens, first_pos: int, seq: int, output_last: bool) -> int:
        """Append ``tokens`` of sequence ``seq`` at positions ``first_pos...``; returns the
        batch index of the last one (whose logits are kept when ``output_last``)."""
        start, n = self.n, len(tokens)
        end = start + n
        if n == 1:  # a generating slot's next token: scalar stores are the cheapest
            self.token[start] = tokens[0]
            self.pos[start] = first_pos
            self.seq[start] = seq
            self.logits[start] = 1 if output_last else 0
            self.n = end
            return start
        self.token[start:end] = tokens
        self.pos[start:end] = range(first_pos, first_pos + n)
        self.seq[start:end] = seq
        if output_last:
            self.logits[end - 1] = 1
        self.n = end
        return end - 1

    def truncate(self, n: int) -> None:
        """Drop everything from batch index ``n`` on."""
        self.logits[n : self.n] = 0
        self.n = n

    def decode(self, ctx) -> int:
        """``llama_decode``: 0 ok, 1 no room in the KV cache (nothing changed), 2 aborted,
        negative an error (see llama.h)."""
        import llama_cpp

        self.batch.n_tokens = self.n
        return int(llama_cpp.llama_decode(ctx, self.batch))


class KVMemory:
    """The sequences of one context's KV cache (llama.cpp's memory API)."""

    def __init__(self, llm):
        import llama_cpp

        self.ctx = llm._ctx.ctx
        self._mem = llama_cpp.llama_get_memory(self.ctx)

    def remove(self, seq: int, p0: int = -1, p1: int = -1) -> bool:
        """Drop positions ``[p0, p1)`` of ``seq`` (-1: open ends); False when the cache
        cannot cut a sequence partially (the whole sequence can always go)."""
        import llama_cpp

        return bool(llama_cpp.llama_memory_seq_rm(self._mem, seq, p0, p1))

    def copy(self, src: int, dst: int, p0: int, p1: int) -> None:
        """Let ``dst`` share ``src``'s cells for positions ``[p0, p1)`` (no new memory
        with a unified cache)."""
        import llama_cpp

        llama_cpp.llama_memory_seq_cp(self._mem, src, dst, p0, p1)

    def clear(self) -> None:
        import llama_cpp

        llama_cpp.llama_memory_clear(self._mem, True)

    def pos_max(self, seq: int) -> int:
        import llama_cpp

        return int(llama_cpp.llama_memory_seq_pos_max(self._mem, seq))


def logits_row(ctx, index: int, n_vocab: int):
    """The logits of batch position ``index`` of the last decode, as a numpy view."""
    import llama_cpp
    import numpy as np

    return np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(ctx, index), shape=(n_vocab,))


def vocab(llm):
    """The model's ``llama_vocab`` pointer (samplers and grammars need it)."""
    return llm._model.vocab


def gbnf_compiles(gbnf: str) -> bool:
    """Whether llama.cpp's own parser accepts the grammar (the tests check every grammar the
    chat layer writes with it; the chat layer itself never imports llama_cpp)."""
    import llama_cpp

    sampler = llama_cpp.llama_sampler_init_grammar(None, gbnf.encode("utf-8"), b"root")
    if not sampler:
        return False
    llama_cpp.llama_sampler_free(sampler)
    return True
