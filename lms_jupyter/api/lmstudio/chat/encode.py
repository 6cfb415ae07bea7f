"""LM Studio 0.4's chat answer and its named stream events, from a Responses run.

The run (:class:`..responses_api._Run`) owns the response object and its OpenAI events;
this module spells both the way ``/api/v1/chat`` does: ``output`` items of type
``message``, ``reasoning`` and ``tool_call`` (with ``tool``, ``arguments``, ``output``,
``provider_info``), ``stats`` with the exact figures of the generations, and the events
``message.start|delta|end``, ``reasoning.start|delta|end``,
``tool_call.start|arguments|result|failure`` in the order the run produced them.
"""

from __future__ import annotations

import json


def _arguments(text: str):
    try:
        return json.loads(text) if text and text.strip() else {}
    except ValueError:
        return text


def _text(item: dict) -> str:
    return "".join(part.get("text", "") for part in item.get("content") or [])


def output_items(response: dict) -> list[dict]:
    out = []
    for item in response.get("output") or []:
        kind = item.get("type")
        if kind == "message":
            out.append({"type": "message", "content": _text(item)})
        elif kind == "reasoning":
            out.append({"type": "reasoning", "content": _text(item)})
        elif kind == "mcp_call":
            call = {
                "type": "tool_call",
                "tool": item["name"],
                "arguments": _arguments(item.get("arguments", "")),
                "output": item.get("output"),
                "provider_info": {
                    "type": "ephemeral_mcp",
                    "server_label": item.get("server_label"),
                },
            }
            if item.get("error"):
                call["error"] = (
                    item["error"].get("message")
                    if isinstance(item["error"], dict)
                    else str(item["error"])
                )
            out.append(call)
    return out


def stats(response: dict, steps: list) -> dict:
    """LM Studio's ``stats``: counts from the response's usage, speed and latency from
    the generations themselves (``steps``: each model step's ``Done``)."""
    usage = response.get("usage") or {}
    first = steps[0].stats if steps else None
    generated = sum(d.stats.completion_tokens for d in steps)
    decode = sum(max(0.0, d.stats.generation_time - d.stats.time_to_first_token) for d in steps)
    speed = (generated - len(steps)) / decode if decode > 0 and generated > len(steps) else 0.0
    return {
        "input_tokens": usage.get("input_tokens", 0),
        "total_output_tokens": usage.get("output_tokens", 0),
        "reasoning_output_tokens": (usage.get("output_tokens_details") or {}).get(
            "reasoning_tokens", 0
        ),
        "tokens_per_second": round(speed, 3),
        "time_to_first_token_seconds": round(first.time_to_first_token, 4) if first else 0.0,
        "cached_input_tokens": (usage.get("input_tokens_details") or {}).get("cached_tokens", 0),
    }


def chat_result(response: dict, steps: list, stored: bool) -> dict:
    """The non-streamed body (and ``chat.end``'s ``result``)."""
    body = {
        "model_instance_id": response["model"],
        "output": output_items(response),
        "stats": stats(response, steps),
    }
    if stored:
        body["response_id"] = response["id"]
    return body


class EventTranslator:
    """Responses stream events in, native chat events out."""

    def __init__(self):
        self._items: dict[int, dict] = {}  # output index -> the item as added

    @staticmethod
    def _event(kind: str, **fields) -> dict:
        return {"__event__": kind, "type": kind, **fields}

    def translate(self, event: dict) -> list[dict]:
        kind = event["type"]
        if kind == "response.output_item.added":
            item = event["item"]
            self._items[event["output_index"]] = item
            if item["type"] == "message":
                return [self._event("message.start")]
            if item["type"] == "reasoning":
                return [self._event("reasoning.start")]
            if item["type"] == "mcp_call":
                return [
                    self._event(
                        "tool_call.start",
                        tool=item["name"],
                        provider_info={
                            "type": "ephemeral_mcp",
                            "server_label": item["server_label"],
                        },
                    )
                ]
            return []
        if kind == "response.output_text.delta":
            return [self._event("message.delta", content=event["delta"])]
        if kind == "response.reasoning_text.delta":
            return [self._event("reasoning.delta", content=event["delta"])]
        if kind == "response.mcp_call_arguments.done":
            item = self._items.get(event["output_index"], {})
            return [
                self._event(
                    "tool_call.arguments",
                    tool=item.get("name"),
                    arguments=_arguments(event.get("arguments", "")),
                )
            ]
        if kind == "response.output_item.done":
            item = event["item"]
            if item["type"] == "message":
                return [self._event("message.end")]
            if item["type"] == "reasoning":
                return [self._event("reasoning.end")]
            if item["type"] == "mcp_call":
                info = {"type": "ephemeral_mcp", "server_label": item["server_label"]}
                if item.get("status") == "failed":
                    error = item.get("error") or {}
                    return [
                        self._event(
                            "tool_call.failure",
                            tool=item["name"],
                            reason=error.get("message", str(error)),
                            provider_info=info,
                        )
                    ]
                return [
                    self._event(
                        "tool_call.result",
                        tool=item["name"],
                        output=item.get("output"),
                        provider_info=info,
                    )
                ]
        return []
