"""``%lms fix`` and ``%lms explain`` in a kernel: pick the cell, stream the answer like
``%%chat`` does (in a conversation of its own, so the ``%%chat`` one is untouched), and
for ``fix`` offer the answer's first code block as a new cell below."""
from __future__ import annotations

import logging

from lms_jupyter.kernel.context.assist import (
    AssistRequest,
    explain_request,
    first_code_block,
    fix_request,
)
from lms_jupyter.kernel.context.history import ContextError
from lms_jupyter.kernel.context.interpolate import Expanded
from lms_jupyter.kernel.context.ipython import show_prompt

log = logging.getLogger(__name__)


class AssistError(Exception):
    """Shown as one line (the magic turns it into a UsageError)."""


def _stream(magics, request: AssistRequest, args):
    from lms_jupyter.errors import APIError
    from lms_jupyter.kernel import runtime
    from lms_jupyter.kernel.chat import ChatOptions, ChatRunner, Conversation
    from lms_jupyter.kernel.display import CellChatView

    model = args.model or magics._continuing_model() or magics.default_model
    mode = magics.mode
    magics._ensure_loaded(model, mode)
    if args.show_prompt:
        show_prompt(Expanded(request.user), model, request.system)
    extra = dict(magics.chat_defaults)
    if args.seed is not None:
        extra["seed"] = args.seed
    options = ChatOptions(model=model, temperature=args.temperature,
                          max_tokens=args.max_tokens, extra=extra)
    view = CellChatView(mode=mode, rate=magics.update_rate, show_stats=magics.show_stats)
    runner = ChatRunner(runtime.get_api(), Conversation(system=request.system))
    try:
        result = runner.run(request.user, options, view)
    except APIError as exc:
        raise AssistError(exc.message) from None
    magics.last_result = result
    return result


def run_fix(magics, args) -> str | None:
    """The code offered (also when interrupted part-way), or None."""
    history = magics.context.history
    try:
        error = history.error(args.cell)
    except ContextError as exc:
        raise AssistError(f"%lms fix: {exc}") from None
    if not error.source.strip():
        raise AssistError(f"%lms fix: the source of cell {error.execution_count} is gone.")
    result = _stream(magics, fix_request(error, magics.context.limits(args.model)), args)
    code = first_code_block(result.content)
    if code is None:
        print("The answer has no code block; no cell was offered.", flush=True)
        return None
    magics.context.set_next_input(code)
    log.info("offered a fix for cell %s (%d lines)", error.execution_count,
             code.count("\n") + 1)
    print(f"A corrected cell {error.execution_count} is offered below; it has not run.",
          flush=True)
    return None


def run_explain(magics, args) -> None:
    history = magics.context.history
    n = -1 if args.cell is None else args.cell
    try:
        source = history.source(n)
    except ContextError as exc:
        raise AssistError(f"%lms explain: {exc}") from None
    count = history.count(n)
    error = history.errors.get(count)
    _stream(magics, explain_request(count, source, error,
                                    magics.context.limits(args.model)), args)
