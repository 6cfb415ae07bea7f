"""OpenAI's Responses wire format: the response object and its stream events.

:class:`ResponseEncoder` owns one response object. Every change to it (an output item
added, a text delta, an MCP call finished, the end) is made through one method that also
returns the stream events saying it, so the object a non-streamed request returns and
the one the ``openai`` SDK accumulates from the stream are built by the same code and
cannot disagree. The rules the SDK's accumulator (openai 3.x) enforces hold by
construction: ``response.created`` first, one response id throughout, strictly
increasing ``sequence_number``, one ``output_index`` per item, every added item done
with the same ``(type, id, call_id)``, no top-level ``error`` key except in the protocol
``error`` event.

It knows nothing of models, MCP sessions or transports: the caller feeds it the typed
answer events of each model step (:mod:`.events`) and tells it about MCP tools.
"""

from __future__ import annotations

import copy
import secrets
import time

from lms_jupyter.chat.events import (
    ContentDelta,
    ReasoningDelta,
    ToolCallArgsDelta,
    ToolCallEnd,
    ToolCallStart,
)
from lms_jupyter.errors import APIError


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(16)}"


def usage_object(input_tokens=0, cached=0, output_tokens=0, reasoning=0) -> dict:
    return {
        "input_tokens": input_tokens,
        "input_tokens_details": {"cached_tokens": cached, "cache_write_tokens": 0},
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": input_tokens + output_tokens,
    }


class ResponseEncoder:
    """One response object and the events that build it.

    ``mcp_names`` maps the function names the model sees for MCP tools to
    ``(server_label, tool name, needs approval)``; calls to those become ``mcp_call``
    (or ``mcp_approval_request``) items, every other call a ``function_call`` item.
    """

    def __init__(self, model: str, echo: dict, response_id: str | None = None):
        self.response = {
            "id": response_id or new_id("resp"),
            "object": "response",
            "created_at": int(time.time()),
            "status": "in_progress",
            "background": False,
            "error": None,
            "incomplete_details": None,
            "model": model,
            "output": [],
            **echo,
            "usage": None,
            "completed_at": None,
        }
        self.mcp_names: dict[str, tuple[str, str, bool]] = {}
        self._seq = 0
        self._open: int | None = None  # the message or reasoning item being written
        self._calls: dict[int, int] = {}  # this step's tool-call index -> output index
        self._approvals: dict[int, list[str]] = {}  # call index -> [name, arguments]
        self.pending_mcp: list[int] = []  # mcp_call items to run (output indexes)
        self.step_function_calls = 0
        self.step_approvals = 0
        self._usage = [0, 0, 0, 0]  # input, cached, output, reasoning

    @property
    def output(self) -> list[dict]:
        return self.response["output"]

    @property
    def output_tokens(self) -> int:
        return self._usage[2]

    # -- plumbing ----------------------------------------------------------------------------
    def _event(self, kind: str, **fields) -> dict:
        event = {"type": kind, "sequence_number": self._seq, **fields}
        self._seq += 1
        return event

    def _lifecycle(self, kind: str) -> dict:
        return self._event(kind, response=copy.deepcopy(self.response))

    def _add(self, item: dict) -> tuple[int, list[dict]]:
        self.output.append(item)
        index = len(self.output) - 1
        return index, [
            self._event("response.output_item.added", output_index=index, item=copy.deepcopy(item))
        ]

    def _item_done(self, index: int) -> dict:
        return self._event(
            "response.output_item.done", output_index=index, item=copy.deepcopy(self.output[index])
        )

    def _ids(self, index: int) -> dict:
        return {"item_id": self.output[index]["id"], "output_index": index}

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> list[dict]:
        return [self._lifecycle("response.created"), self._lifecycle("response.in_progress")]

    def add_usage(self, stats, reasoning_tokens: int = 0) -> None:
        """One model step's counts (``engine.events.Finished``); steps add up."""
        for i, value in enumerate(
            (stats.prompt_tokens, stats.cached_tokens, stats.completion_tokens, reasoning_tokens)
        ):
            self._usage[i] += value
        self._estimated = getattr(self, "_estimated", False) or bool(
            getattr(stats, "usage_estimated", False)
        )
        self.response["usage"] = usage_object(*self._usage)
        if self._estimated:  # a remote engine reported none: the relay counted them
            self.response["usage"]["estimated"] = True

    def finish(self, incomplete_reason: str | None = None) -> None:
        """Mark the response completed (or incomplete, e.g. ``max_output_tokens``)."""
        if incomplete_reason is None:
            self.response["status"] = "completed"
        else:
            self.response["status"] = "incomplete"
            self.response["incomplete_details"] = {"reason": incomplete_reason}
        self.response["completed_at"] = int(time.time())
        if self.response["usage"] is None:
            self.response["usage"] = usage_object(*self._usage)

    def fail(self, error: APIError) -> list[dict]:
        """Close every open item and mark the response failed; its closing events."""
        events = self.close_open(incomplete=True)
        for call in sorted(self._calls):  # calls cut off while their arguments streamed
            events += self._call_end(ToolCallEnd(call, complete=False))
        for index in self.pending_mcp:
            events += self.finish_mcp_call(
                index,
                error={
                    "type": "mcp_protocol_error",
                    "code": -32603,
                    "message": "The response failed before the call ran.",
                },
                keep_pending=True,
            )
        self.pending_mcp = []
        self.response["status"] = "failed"
        self.response["error"] = {"code": "server_error", "message": error.message}
        if self.response["usage"] is None:
            self.response["usage"] = usage_object(*self._usage)
        return events

    def terminal(self) -> list[dict]:
        """The last event: response.completed / .incomplete / .failed."""
        kind = {
            "completed": "response.completed",
            "incomplete": "response.incomplete",
            "failed": "response.failed",
        }[self.response["status"]]
        return [self._lifecycle(kind)]

    # -- model output ----------------------------------------------------------------------------
    def begin_step(self) -> None:
        self._calls, self._approvals = {}, {}
        self.step_function_calls = self.step_approvals = 0

    def feed(self, event) -> list[dict]:
        """Events for one typed answer event of the current step."""
        if isinstance(event, ContentDelta):
            return self._text(event.text) if event.text else []
        if isinstance(event, ReasoningDelta):
            return self._reasoning(event.text) if event.text else []
        if isinstance(event, ToolCallStart):
            return self._call_start(event)
        if isinstance(event, ToolCallArgsDelta):
            return self._call_args(event)
        if isinstance(event, ToolCallEnd):
            return self._call_end(event)
        return []

    def _open_kind(self) -> str | None:
        return None if self._open is None else self.output[self._open]["type"]

    def _text(self, text: str) -> list[dict]:
        events = []
        if self._open_kind() != "message":
            events += self.close_open()
            part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
            self._open, events_added = self._add(
                {
                    "id": new_id("msg"),
                    "type": "message",
                    "role": "assistant",
                    "status": "in_progress",
                    "content": [],
                }
            )
            events += events_added
            self.output[self._open]["content"].append(part)
            events.append(
                self._event(
                    "response.content_part.added",
                    **self._ids(self._open),
                    content_index=0,
                    part=copy.deepcopy(part),
                )
            )
        assert self._open is not None  # a message is open: it was, or was just added
        self.output[self._open]["content"][0]["text"] += text
        events.append(
            self._event(
                "response.output_text.delta",
                **self._ids(self._open),
                content_index=0,
                delta=text,
                logprobs=[],
            )
        )
        return events

    def _reasoning(self, text: str) -> list[dict]:
        events = []
        if self._open_kind() != "reasoning":
            events += self.close_open()
            part = {"type": "reasoning_text", "text": ""}
            self._open, events_added = self._add(
                {
                    "id": new_id("rs"),
                    "type": "reasoning",
                    "summary": [],
                    "content": [],
                    "status": "in_progress",
                }
            )
            events += events_added
            self.output[self._open]["content"].append(part)
            events.append(
                self._event(
                    "response.content_part.added",
                    **self._ids(self._open),
                    content_index=0,
                    part=copy.deepcopy(part),
                )
            )
        assert self._open is not None  # a reasoning item is open: it was, or was just added
        self.output[self._open]["content"][0]["text"] += text
        events.append(
            self._event(
                "response.reasoning_text.delta",
                **self._ids(self._open),
                content_index=0,
                delta=text,
            )
        )
        return events

    def close_open(self, incomplete: bool = False) -> list[dict]:
        """Finish the message or reasoning item being written, if any."""
        if self._open is None:
            return []
        index, self._open = self._open, None
        item = self.output[index]
        part = item["content"][0]
        ids = self._ids(index)
        if item["type"] == "message":
            events = [
                self._event(
                    "response.output_text.done",
                    **ids,
                    content_index=0,
                    text=part["text"],
                    logprobs=[],
                )
            ]
        else:
            events = [
                self._event(
                    "response.reasoning_text.done", **ids, content_index=0, text=part["text"]
                )
            ]
        events.append(
            self._event(
                "response.content_part.done", **ids, content_index=0, part=copy.deepcopy(part)
            )
        )
        item["status"] = "incomplete" if incomplete else "completed"
        return events + [self._item_done(index)]

    # -- tool calls ------------------------------------------------------------------------------
    def _call_start(self, event: ToolCallStart) -> list[dict]:
        events = self.close_open()
        mcp = self.mcp_names.get(event.name)
        if mcp is not None and mcp[2]:  # needs approval: one item once the arguments are known
            self._approvals[event.index] = [event.name, ""]
            return events
        if mcp is not None:
            index, added = self.begin_mcp_call(mcp[0], mcp[1], "")
            self._calls[event.index] = index
            return events + added
        index, added = self._add(
            {
                "id": new_id("fc"),
                "type": "function_call",
                "call_id": event.id,
                "name": event.name,
                "arguments": "",
                "status": "in_progress",
            }
        )
        self._calls[event.index] = index
        self.step_function_calls += 1
        return events + added

    def _call_args(self, event: ToolCallArgsDelta) -> list[dict]:
        if event.index in self._approvals:
            self._approvals[event.index][1] += event.text
            return []
        index = self._calls.get(event.index)
        if index is None or not event.text:
            return []
        item = self.output[index]
        item["arguments"] += event.text
        kind = (
            "response.mcp_call_arguments.delta"
            if item["type"] == "mcp_call"
            else "response.function_call_arguments.delta"
        )
        return [self._event(kind, **self._ids(index), delta=event.text)]

    def _call_end(self, event: ToolCallEnd) -> list[dict]:
        if event.index in self._approvals:
            name, arguments = self._approvals.pop(event.index)
            if not event.complete:
                return []  # a broken call asks for nothing
            return self._approval_request(name, arguments)
        index = self._calls.pop(event.index, None)
        if index is None:
            return []
        item = self.output[index]
        ids = self._ids(index)
        if item["type"] == "mcp_call":
            events = [
                self._event("response.mcp_call_arguments.done", **ids, arguments=item["arguments"])
            ]
            if event.complete:
                self.pending_mcp.append(index)
                return events
            return events + self.finish_mcp_call(
                index,
                error={
                    "type": "mcp_protocol_error",
                    "code": -32602,
                    "message": "The model's call broke off before its arguments were complete.",
                },
            )
        item["status"] = "completed" if event.complete else "incomplete"
        return [
            self._event(
                "response.function_call_arguments.done",
                **ids,
                name=item["name"],
                arguments=item["arguments"],
            ),
            self._item_done(index),
        ]

    def _approval_request(self, exposed_name: str, arguments: str) -> list[dict]:
        label, name, _approval = self.mcp_names[exposed_name]
        index, events = self._add(
            {
                "id": new_id("mcpr"),
                "type": "mcp_approval_request",
                "server_label": label,
                "name": name,
                "arguments": arguments,
            }
        )
        self.step_approvals += 1
        return events + [self._item_done(index)]

    # -- MCP items -------------------------------------------------------------------------------
    def list_tools(self, server_label: str, tools: list[dict]) -> list[dict]:
        """An ``mcp_list_tools`` item, added and done with the server's (allowed) tools."""
        index, events = self._add(
            {
                "id": new_id("mcpl"),
                "type": "mcp_list_tools",
                "server_label": server_label,
                "tools": [],
            }
        )
        ids = self._ids(index)
        events.append(self._event("response.mcp_list_tools.in_progress", **ids))
        self.output[index]["tools"] = copy.deepcopy(tools)
        events.append(self._event("response.mcp_list_tools.completed", **ids))
        return events + [self._item_done(index)]

    def begin_mcp_call(
        self, server_label: str, name: str, arguments: str, approval_request_id: str | None = None
    ) -> tuple[int, list[dict]]:
        """An ``mcp_call`` item in progress; ``arguments`` given whole (an approved call)
        are sent as one delta and done. Run it, then :meth:`finish_mcp_call`."""
        index, events = self._add(
            {
                "id": new_id("mcp"),
                "type": "mcp_call",
                "server_label": server_label,
                "name": name,
                "arguments": "",
                "approval_request_id": approval_request_id,
                "output": None,
                "error": None,
                "status": "in_progress",
            }
        )
        ids = self._ids(index)
        events.append(self._event("response.mcp_call.in_progress", **ids))
        if arguments:
            self.output[index]["arguments"] = arguments
            events.append(self._event("response.mcp_call_arguments.delta", **ids, delta=arguments))
        if approval_request_id is not None:
            events.append(
                self._event("response.mcp_call_arguments.done", **ids, arguments=arguments)
            )
            self.pending_mcp.append(index)
        return index, events

    def finish_mcp_call(
        self,
        index: int,
        output: str | None = None,
        error: dict | None = None,
        keep_pending: bool = False,
    ) -> list[dict]:
        item = self.output[index]
        if not keep_pending and index in self.pending_mcp:
            self.pending_mcp.remove(index)
        item["output"], item["error"] = output, error
        item["status"] = "failed" if error is not None else "completed"
        kind = "response.mcp_call.failed" if error is not None else "response.mcp_call.completed"
        return [self._event(kind, **self._ids(index)), self._item_done(index)]
