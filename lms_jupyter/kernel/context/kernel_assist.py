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


def _model(magics, args) -> str:
    """The model to ask (as ``%%chat`` picks it), loaded with progress if need be."""
    model = args.model or magics._continuing_model() or magics.default_model
    magics._ensure_loaded(model, magics.mode)
    return model


def _limits(magics, model: str):
    return magics.context.limits(model, magics.context_tokens)


def _stream(magics, model: str, request: AssistRequest, args):
    from lms_jupyter.errors import APIError
    from lms_jupyter.kernel import runtime
    from lms_jupyter.kernel.chat import ChatOptions, ChatRunner, Conversation
    from lms_jupyter.kernel.display import CellChatView

    mode = magics.mode
    if args.show_prompt:
        show_prompt(Expanded(request.user), model, request.system)
    extra = dict(magics.chat_defaults)
    if args.seed is not None:
        extra["seed"] = args.seed
    options = ChatOptions(
        model=model, temperature=args.temperature, max_tokens=args.max_tokens, extra=extra
    )
    view = CellChatView(mode=mode, rate=magics.update_rate, show_stats=magics.show_stats)
    runner = ChatRunner(runtime.get_api(), Conversation(system=request.system))
    try:
        result = runner.run(request.user, options, view)
    except APIError as exc:
        raise AssistError(exc.message) from None
    magics.last_result = result
    return result


def run_fix(magics, args) -> None:
    """Offer the answer's first code block as the next cell (also when the answer was cut
    by max_tokens or interrupted part-way)."""
    history = magics.context.history
    try:
        error = history.error(args.cell)
    except ContextError as exc:
        raise AssistError(f"%lms fix: {exc}") from None
    if not error.source.strip():
        raise AssistError(f"%lms fix: the source of cell {error.execution_count} is gone.")
    model = _model(magics, args)
    result = _stream(magics, model, fix_request(error, _limits(magics, model)), args)
    code = first_code_block(result.content)
    if code is None:
        print("The answer has no code block; no cell was offered.", flush=True)
    else:
        magics.context.set_next_input(code)
        log.info(
            "offered a fix for cell %s (%d lines)", error.execution_count, code.count("\n") + 1
        )
        print(
            f"A corrected cell {error.execution_count} is offered below; it has not run.",
            flush=True,
        )
    _stop_if_interrupted(result)


def _stop_if_interrupted(result) -> None:
    """As ``%%chat``: a stopped answer stops "Run all" here, in one line."""
    if result.interrupted:
        from lms_jupyter.kernel.chat import GenerationInterrupted

        raise GenerationInterrupted(result.stats.completion_tokens if result.stats else 0)


def run_explain(magics, args) -> None:
    history = magics.context.history
    n = -1 if args.cell is None else args.cell
    try:
        source = history.source(n)
    except ContextError as exc:
        raise AssistError(f"%lms explain: {exc}") from None
    count = history.count(n)
    error = history.errors.get(count)
    model = _model(magics, args)
    result = _stream(
        magics, model, explain_request(count, source, error, _limits(magics, model)), args
    )
    _stop_if_interrupted(result)
