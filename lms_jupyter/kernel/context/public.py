"""``lms_jupyter.chat(prompt, ...)``: one chat turn from code, with the same context rules
as ``%%chat``.

``{name}`` and ``{expr}`` are filled from the caller's namespace (its globals and
locals), ``{In[n]}``, ``{Out[n]}``, ``{Err[n]}`` and ``{Err}`` from the notebook when
running in IPython; values go through the shared renderer with the same cap. This is
on by default, like ``%%chat``; ``context=False`` sends the prompt exactly as written.
"""

from __future__ import annotations

import sys

from lms_jupyter.kernel.context.history import ContextError  # noqa: F401 - documented
from lms_jupyter.kernel.context.interpolate import resolve
from lms_jupyter.kernel.context.render import DEFAULT_CONTEXT_TOKENS, Limits


def _notebook_history():
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    shell = get_ipython()
    if shell is None:
        return None
    magics = getattr(shell, "_lms_magics", None)
    if magics is not None and getattr(magics, "context", None) is not None:
        return magics.context.history
    from lms_jupyter.kernel.context.ipython import shell_history

    return shell_history(shell)  # In/Out only: errors are recorded by the extension


def chat(
    prompt: str,
    model: str | None = None,
    *,
    system: str | None = None,
    context: bool = True,
    context_tokens: int = DEFAULT_CONTEXT_TOKENS,
    max_tokens: int | None = None,
    temperature: float | None = None,
    seed: int | None = None,
    namespace: dict | None = None,
    show_prompt: bool = False,
    _depth: int = 1,
    **extra,
) -> str:
    """The model's answer to ``prompt`` (a new conversation each call).

    ``namespace``: where ``{name}`` is looked up (default: the caller's globals and
    locals). A bad placeholder raises ``ContextError`` (a ValueError) naming it before
    any model call. Other keyword arguments are request fields (``top_k``, ...).
    """
    from lms_jupyter.kernel import runtime
    from lms_jupyter.kernel.chat import ChatOptions, ChatRunner, Conversation
    from lms_jupyter.kernel.context.ipython import model_counter
    from lms_jupyter.kernel.context.ipython import show_prompt as show
    from lms_jupyter.models.catalog import DEFAULT_MODEL_KEY

    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError("lms_jupyter.chat: prompt must be a non-empty string.")
    model = model or DEFAULT_MODEL_KEY
    text = prompt
    if context:
        if namespace is None:
            frame = sys._getframe(_depth)
            scope = {**frame.f_globals, **frame.f_locals}
        else:
            scope = namespace
        resolved = resolve(prompt, scope, _notebook_history(), scope)
        manager = runtime.get_manager()
        if manager.get_loaded(model) is None and getattr(manager, "jit_loading", False):
            manager.acquire(model)  # load now: the cap is measured with its tokenizer
        expanded = resolved.render(Limits(tokens=context_tokens, counter=model_counter(model)))
        text = expanded.text
        if show_prompt:
            show(expanded, model, system)
    request_extra = dict(extra)
    if seed is not None:
        request_extra["seed"] = seed
    options = ChatOptions(
        model=model, temperature=temperature, max_tokens=max_tokens, extra=request_extra
    )
    runner = ChatRunner(runtime.get_api(), Conversation(system=system))
    return runner.run(text, options).content  # an APIError says what went wrong
