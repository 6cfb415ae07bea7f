"""A typed request bound to a loaded model, ready to queue: the preparation step.

Preparation is blocking (it may JIT-load the model and a draft model), so the server
runs it off the event loop. It renders the prompt with the model's own template (tools,
reasoning variables), picks the grammar, and says how the output is parsed back; what
happens to the tokens afterwards is :mod:`.drive`'s and :mod:`.encode`'s business.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from lms_jupyter.api.openai.fim import completion_prompt
from lms_jupyter.api.openai.requests import ChatRequest, CompletionRequest, GenerationFields
from lms_jupyter.api.prepared import Prepared
from lms_jupyter.api.remote import prepare_remote_chat, prepare_remote_completion
from lms_jupyter.chat.plan import output_factory, plan_chat
from lms_jupyter.chat.templates import PLAIN_TRANSCRIPT_STOP, render_chat
from lms_jupyter.engine.instance import ModelInstance
from lms_jupyter.engine.manager import ModelManager
from lms_jupyter.engine.request import GenerationRequest
from lms_jupyter.errors import not_a_chat_model

if TYPE_CHECKING:
    from lms_jupyter.engine.remote.models import RemoteModel
    from lms_jupyter.engine.worker.proxy import WorkerModel

__all__ = ["Prepared", "acquire", "prepare_chat", "prepare_completion"]


def acquire(manager: ModelManager, request: GenerationFields) -> ModelInstance:
    """The request's model, JIT-loaded with its ``ttl`` / ``context_length`` if needed."""
    return manager.acquire(request.model, ttl=request.ttl, context_length=request.context_length)


def _draft(manager: ModelManager, model: WorkerModel, request: GenerationFields):
    if request.draft is None:
        return None
    return manager.acquire_draft(model, request.draft.model, request.draft.max_tokens)


def _generation_model(manager: ModelManager, request: GenerationFields) -> ModelInstance:
    model = acquire(manager, request)
    if not model.capabilities.chat:
        raise not_a_chat_model(model.identifier)
    return model


def prepare_chat(
    manager: ModelManager, request: ChatRequest, reasoning_field: str = "both"
) -> Prepared:
    """Render the chat prompt with the model's template and plan tools / format /
    reasoning; ``reasoning_field="inline"`` keeps reasoning inside the content."""
    model = _generation_model(manager, request)
    if model.capabilities.renders_prompt:  # a remote engine applies its own template
        return prepare_remote_chat(cast("RemoteModel", model), request, reasoning_field)
    # an instance that does not render prompts is a local one (the worker's proxy)
    model = cast("WorkerModel", model)
    plan = plan_chat(model, request.features, request.messages)
    template = model.variant.chat_template
    bos = model.bos_text
    prompt = render_chat(
        template,
        plan.messages,
        bos_token=bos,
        eos_token=model.eos_text,
        tools=plan.tools,
        **plan.variables,
    )
    stop = list(request.stop)
    if template is None:
        stop += PLAIN_TRANSCRIPT_STOP
    generation = GenerationRequest(
        prompt=prompt,
        sampling=request.sampling,
        max_tokens=request.max_tokens,
        stop=stop,
        grammar=plan.grammar,
        add_bos=model.adds_bos and not (bos and prompt.startswith(bos)),
        draft=_draft(manager, model, request),
        render_special=plan.render_special,
        logprobs=request.logprobs,
    )
    return Prepared(
        model,
        generation,
        output_factory(plan, request.stream, reasoning_field),
        stream=request.stream,
        include_usage=request.include_usage,
    )


def prepare_completion(manager: ModelManager, request: CompletionRequest) -> Prepared:
    """A raw text completion: the prompt as given (text or token ids), no template; with a
    ``suffix``, a fill-in-the-middle prompt when the model has FIM tokens (:mod:`.fim`)."""
    model = _generation_model(manager, request)
    if model.capabilities.renders_prompt:
        return prepare_remote_completion(cast("RemoteModel", model), request)
    model = cast("WorkerModel", model)  # not a remote engine's: a local instance
    built = completion_prompt(model, request.prompt, request.suffix, model.adds_bos)
    generation = GenerationRequest(
        prompt=built.prompt,
        sampling=request.sampling,
        max_tokens=request.max_tokens,
        stop=request.stop,
        add_bos=built.add_bos,
        draft=_draft(manager, model, request),
        logprobs=request.logprobs,
    )
    echo = request.prompt if request.echo and isinstance(request.prompt, str) else ""
    prompt_chars = 0
    if request.logprobs is not None:
        prompt_chars = (
            len(request.prompt)
            if isinstance(request.prompt, str)
            else len(model.detokenize(request.prompt))
        )
    return Prepared(
        model,
        generation,
        echo=echo,
        stream=request.stream,
        include_usage=request.include_usage,
        prompt_chars=prompt_chars,
    )
