"""``--source model`` events: the prompt as the model saw it and the output with LM Studio's
prediction stats, published from each generation's typed events (cheap when nobody follows)."""

from __future__ import annotations

import logging

from lms_jupyter.logs.bus import MODEL_INPUT, MODEL_OUTPUT, bus


def model_path(model) -> str:
    """LM Studio's ``modelPath``: the file relative to the models folder when we can tell."""
    variant, info = model.variant, model.info
    path = variant.path
    if getattr(info, "embedded", False):
        return f"{info.publisher}/{path.name}"
    return f"{path.parent.parent.name}/{path.parent.name}/{path.name}"


def prediction_stats(model, finished) -> dict:
    """LM Studio's LLMPredictionStats from a Finished event."""
    stats = {
        "stopReason": finished.stop_reason,
        "tokensPerSecond": round(finished.tokens_per_second, 3),
        "numGpuLayers": model.config.n_gpu_layers,
        "timeToFirstTokenSec": round(finished.time_to_first_token, 4),
        "promptTokensCount": finished.prompt_tokens,
        "predictedTokensCount": finished.completion_tokens,
        "totalTokensCount": finished.prompt_tokens + finished.completion_tokens,
    }
    draft = finished.draft_stats
    if draft:
        stats.update(
            {
                "usedDraftModelKey": draft.get("draft_model"),
                "totalDraftTokensCount": draft.get("total_draft_tokens_count"),
                "acceptedDraftTokensCount": draft.get("accepted_draft_tokens_count"),
                "rejectedDraftTokensCount": draft.get("rejected_draft_tokens_count"),
                "ignoredDraftTokensCount": draft.get("ignored_draft_tokens_count"),
            }
        )
    return stats


_outputs: dict[int, list[str]] = {}  # id(request) -> text so far, while someone follows


def on_generation_event(model, request, event) -> None:
    """Called for each generation event a model's worker sends: publishes the prompt when
    generation starts and the output (with stats) when it finishes. Cheap when nobody
    follows ``--source model``."""
    if not bus().has_subscribers("model") and id(request) not in _outputs:
        return
    try:
        _publish_generation_event(model, request, event)
    except Exception:
        logging.getLogger(__name__).debug("log event failed", exc_info=True)


def _publish_generation_event(model, request, event) -> None:
    from lms_jupyter.engine.events import Failed, Finished, Started, TextDelta

    if isinstance(event, TextDelta):
        if id(request) in _outputs:
            _outputs[id(request)].append(event.text)
        return
    if isinstance(event, Failed):
        _outputs.pop(id(request), None)
        return
    if isinstance(event, Started):
        _outputs[id(request)] = []
        prompt = request.prompt
        if not isinstance(prompt, str):  # token ids: the worker rendered them
            prompt = event.prompt_text if event.prompt_text is not None else str(list(prompt))
        bus().publish(
            {
                "type": MODEL_INPUT,
                "input": prompt,
                "modelPath": model_path(model),
                "modelIdentifier": model.identifier,
            }
        )
    elif isinstance(event, Finished):
        output = "".join(_outputs.pop(id(request), []))
        bus().publish(
            {
                "type": MODEL_OUTPUT,
                "output": output,
                "stats": prediction_stats(model, event),
                "modelIdentifier": model.identifier,
                "modelPath": model_path(model),
            }
        )
