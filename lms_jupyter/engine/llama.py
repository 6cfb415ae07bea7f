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
from typing import Callable

log = logging.getLogger(__name__)
llama_log = logging.getLogger("lms_jupyter.llama_cpp")

_LOAD_LOCK = threading.Lock()
_routing_lock = threading.Lock()
_routed = False
_log_callback = None  # keeps the ctypes callback alive for the life of the process


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

        @llama_cpp.llama_log_callback
        def on_log(level, text, _user_data):
            try:
                pending.append(text.decode("utf-8", errors="replace"))
                if pending[-1].endswith("\n"):
                    line = "".join(pending).rstrip()
                    pending.clear()
                    if line:
                        llama_log.debug("%s", line)
            except Exception:  # noqa: BLE001 - a C callback must never raise
                pass

        _log_callback = on_log
        llama_cpp.llama_log_set(on_log, ctypes.c_void_p(0))

        class _NoRedirect:
            def __init__(self, disable: bool = True):  # noqa: ARG002 - the same signature
                pass

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                return False

        llama_module.suppress_stdout_stderr = _NoRedirect
        _routed = True


class LoadCancelled(Exception):
    """A load stopped because its progress callback asked it to."""


def load_llama(model_path: str, *, progress: Callable[[float], bool] | None = None,
               **kwargs):
    """A ``Llama`` for ``model_path``; ``progress(fraction)`` is called while the weights
    load and may return False to cancel (then :class:`LoadCancelled` is raised).

    One load at a time: llama.cpp's progress callback is set through llama-cpp-python's
    model-params factory, which is swapped for the duration of this load only.
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

        lib.llama_model_default_params = params_with_progress
        try:
            llm = Llama(model_path=model_path, verbose=False, **kwargs)
        except Exception:
            if cancelled.is_set():
                raise LoadCancelled() from None
            raise
        finally:
            lib.llama_model_default_params = original
    if progress is not None:
        progress(1.0)
    return llm


def token_bytes(llm, token: int, special: bool = False) -> bytes:
    """The exact bytes of one token (llama-cpp-python's helper pads them with NULs)."""
    import llama_cpp

    buf = ctypes.create_string_buffer(64)
    n = llama_cpp.llama_token_to_piece(llm._model.vocab, token, buf, 64, 0, special)
    if n < 0:
        buf = ctypes.create_string_buffer(-n)
        n = llama_cpp.llama_token_to_piece(llm._model.vocab, token, buf, -n, 0, special)
    return buf.raw[:max(n, 0)]


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
