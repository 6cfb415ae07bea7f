"""``/v1/responses``: stateful turns, function and MCP tools, as plain Python.

One response may take several model steps: the model calls an MCP tool, the server runs
it and feeds the result back, until the model answers (or calls a function tool, which
the client runs, or a call needs approval). Each step is an ordinary chat generation:
:func:`.responses_request.step_request` makes the typed ``ChatRequest``,
:func:`.prepare.prepare_chat` renders it with the model's template and grammar, and
:class:`.drive.Generation` yields the typed answer events that
:class:`.responses_encode.ResponseEncoder` turns into output items and stream events.

Everything that can refuse a request (the body, ``previous_response_id``, the MCP policy,
listing MCP tools, loading the model, a prompt that does not fit) happens before the
first byte is sent, so those are HTTP errors; a failure after that is a
``response.failed`` event (streams) or the error status (plain requests), and the failed
response is stored like any other. A response is stored before its last event is sent.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import aclosing

from lms_jupyter.api.drive import Generation
from lms_jupyter.api.events import Done, Failed
from lms_jupyter.api.prepare import prepare_chat
from lms_jupyter.api.prepared import Prepared
from lms_jupyter.api.responses import mcp_tools
from lms_jupyter.api.responses import request as rr
from lms_jupyter.api.responses.encode import ResponseEncoder
from lms_jupyter.api.responses.mcp_tools import McpCallError, McpPolicy, McpTool
from lms_jupyter.api.responses.store import ResponseStore
from lms_jupyter.api.results import JSONResponse, StreamResponse
from lms_jupyter.engine.channel import EventChannel, run_blocking
from lms_jupyter.engine.manager import ModelManager
from lms_jupyter.errors import APIError, bad_request

log = logging.getLogger(__name__)

MAX_STEPS = 16  # model steps in one response, whatever max_tool_calls says


def not_found(response_id: str) -> APIError:
    return APIError(
        f"Response with id '{response_id}' not found.",
        404,
        "invalid_request_error",
        None,
        "not_found",
    )


class ResponsesAPI:
    """The /v1/responses surface: create (streamed or not), retrieve, delete."""

    def __init__(
        self,
        manager: ModelManager,
        presets=None,
        store: ResponseStore | None = None,
        mcp: McpPolicy | None = None,
    ):
        self.manager = manager
        self.presets = presets
        self.store = store or ResponseStore()
        self.mcp = mcp or McpPolicy()

    def parse(self, body) -> rr.ResponsesRequest:
        if isinstance(body, dict) and body.get("preset") is not None and self.presets is None:
            from lms_jupyter.models.presets import PresetStore

            self.presets = PresetStore()
        return rr.parse(rr.apply_preset(body, self.presets))

    async def create(self, body, channel: EventChannel | None = None):
        """POST /v1/responses. ``channel`` is cancelled when the client goes away."""
        run = _Run(self, self.parse(body), channel)
        await run.begin()
        if run.request.stream:
            return StreamResponse(run.sse(), run.cancel, done_marker=None)
        return JSONResponse(await run.result())

    async def retrieve(self, response_id: str) -> JSONResponse:
        response = await run_blocking(self.store.get, response_id)
        if response is None:
            raise not_found(response_id)
        return JSONResponse(response)

    async def delete(self, response_id: str) -> JSONResponse:
        if not await run_blocking(self.store.delete, response_id):
            raise not_found(response_id)
        return JSONResponse({"id": response_id, "object": "response", "deleted": True})


class _Run:
    """One response from its first check to its stored end."""

    def __init__(
        self, api: ResponsesAPI, request: rr.ResponsesRequest, client: EventChannel | None
    ):
        self.api = api
        self.request = request
        self.client = client
        self.cancelled = False
        self.context: list[dict] = []  # earlier turns' items
        self.encoder: ResponseEncoder | None = None
        self.generation: Generation | None = None
        self.prepared: Prepared | None = None
        self.servers = {s.label: s for s in request.mcp}
        self.exposed: dict[str, tuple[McpTool, dict]] = {}  # model name -> (tool, chat tool)
        self.calls_made = 0
        self.steps = 0
        self.forced_done = False  # a forced tool_choice applies to the first step only
        self.pending: list[list[dict]] = []  # events made before the stream started
        self.error: APIError | None = None
        self._task: asyncio.Future | None = None

    # -- before the first byte ------------------------------------------------------------------
    async def begin(self) -> None:
        request, api = self.request, self.api
        if request.previous_response_id is not None:
            context = await run_blocking(api.store.conversation, request.previous_response_id)
            if context is None:
                raise APIError(
                    f"Previous response with id '{request.previous_response_id}' not found.",
                    400,
                    "invalid_request_error",
                    "previous_response_id",
                    "previous_response_not_found",
                )
            self.context = context
        rr.check_turn(self.context, request.items)
        approved = self._approved_calls()
        await api.mcp.check(request.mcp)
        model = await run_blocking(
            lambda: api.manager.acquire(
                request.model,
                ttl=request.generation["ttl"],
                context_length=request.generation["context_length"],
            )
        )
        self.encoder = ResponseEncoder(model.identifier, request.echo)
        self.pending.append(self.encoder.start())
        await self._list_tools()
        for asked in approved:
            index, events = self.encoder.begin_mcp_call(
                asked["server_label"], asked["name"], asked.get("arguments", ""), asked["id"]
            )
            self.pending.append(events)
            self.forced_done = True  # the approved call was this turn's forced call
        for index in list(self.encoder.pending_mcp):
            self.pending.append(await self._execute(index))
        await self._start_step()

    def _approved_calls(self) -> list[dict]:
        asked = {i["id"]: i for i in self.context if i.get("type") == "mcp_approval_request"}
        out = []
        for n, item in enumerate(self.request.items):
            if item["type"] == "mcp_approval_response" and item["approve"]:
                call = asked[item["approval_request_id"]]
                server = self.servers.get(call["server_label"])
                if server is None:
                    raise bad_request(
                        f"The approved call needs the MCP server "
                        f"{call['server_label']!r}: send it in 'tools' again.",
                        f"input[{n}]",
                    )
                allowed = server.allowed
                if (
                    allowed is not None
                    and allowed.names is not None
                    and call["name"] not in allowed.names
                ):
                    raise bad_request(
                        f"The approved call is to {call['name']!r}, which is not "
                        f"in the allowed_tools of MCP server {server.label!r}.",
                        f"input[{n}]",
                    )
                out.append(call)
        return out

    async def _list_tools(self) -> None:
        """List every MCP server's tools; an ``mcp_list_tools`` item for those the
        conversation does not already show with the same tools."""
        shown = {}
        for item in [*self.context, *self.request.items]:
            if item.get("type") == "mcp_list_tools" and not item.get("error"):
                shown[item.get("server_label")] = sorted(
                    t.get("name", "") for t in item.get("tools") or []
                )
        assert self.encoder is not None  # begin() made it
        taken = {tool["function"]["name"] for tool in self.request.function_tools}
        for server in self.request.mcp:
            tools = await mcp_tools.list_tools(server, self.api.mcp.timeout)
            if shown.get(server.label) != sorted(t.name for t in tools):
                self.pending.append(
                    self.encoder.list_tools(server.label, [t.listed() for t in tools])
                )
            for tool in tools:
                name = tool.name if tool.name not in taken else f"{server.label}_{tool.name}"
                suffix = 2
                while name in taken:
                    name, suffix = f"{server.label}_{tool.name}_{suffix}", suffix + 1
                taken.add(name)
                function = {"name": name, "parameters": tool.input_schema or None}
                if tool.description:
                    function["description"] = tool.description
                self.exposed[name] = (tool, {"type": "function", "function": function})
                self.encoder.mcp_names[name] = (
                    server.label,
                    tool.name,
                    server.approval.needs_approval(tool.name, tool.read_only),
                )

    def _step_tools(self) -> tuple[list[dict], str | dict]:
        """The tools offered to this step and its tool_choice."""
        request = self.request
        mcp_left = request.max_tool_calls is None or self.calls_made < request.max_tool_calls
        mcp = [chat_tool for _tool, chat_tool in self.exposed.values()] if mcp_left else []
        tools = [*request.function_tools, *mcp]
        choice = request.tool_choice
        if choice == "none" or (not tools and self.forced_done):
            return tools, "none" if tools else "auto"
        if self.forced_done or choice == "auto":
            return tools, "auto"
        if not tools:
            raise bad_request(
                "tool_choice asks for a tool call, but the MCP servers offer no allowed tools.",
                "tool_choice",
            )
        if isinstance(choice, dict) and choice.get("type") == "mcp":
            label, name = choice["server_label"], choice["name"]
            names = [
                n
                for n, (tool, _c) in self.exposed.items()
                if tool.server == label and (name is None or tool.name == name)
            ]
            if not names:
                listed = sorted(t.name for t, _c in self.exposed.values() if t.server == label)
                raise bad_request(
                    f"tool_choice names {name or 'a tool'!r} of MCP server "
                    f"{label!r}, which offers none such (its allowed tools: "
                    f"{', '.join(listed) or 'none'}).",
                    "tool_choice",
                )
            if name is None:
                return [self.exposed[n][1] for n in names], "required"
            return tools, {"type": "function", "function": {"name": names[0]}}
        return tools, choice

    async def _start_step(self) -> None:
        """Prepare and queue the next model step; raises its APIError if it cannot run."""
        request = self.request
        tools, choice = self._step_tools()
        self.forced_done = True
        budget = request.max_output_tokens
        assert self.encoder is not None  # begin() made it
        if budget is not None:
            budget -= self.encoder.output_tokens
        conversation = [*self.context, *request.items, *self.encoder.output]
        chat = rr.step_request(request, conversation, tools, choice, budget)
        self.prepared = await run_blocking(prepare_chat, self.api.manager, chat, "both")
        self.encoder.begin_step()
        self.steps += 1
        self.generation = Generation(self.prepared, EventChannel.for_running_loop())
        await self.generation.start()

    # -- the events -------------------------------------------------------------------------------
    def gone(self) -> bool:
        return self.cancelled or (self.client is not None and self.client.cancelled)

    def cancel(self) -> None:
        """The client went away: stop generating, stop waiting for MCP servers."""
        self.cancelled = True
        if self.generation is not None:
            self.generation.cancel()
        if self._task is not None:
            self._task.cancel()

    async def events(self):
        """Lists of stream events, ending with the terminal one (after storing)."""
        for events in self.pending:
            yield events
        self.pending = []
        encoder = self.encoder
        assert encoder is not None  # begin() made it
        try:
            while True:
                done = None
                assert self.generation is not None  # _start_step() made it
                async with aclosing(self.generation.batches()) as batches:
                    async for batch in batches:  # closing them cancels the generation
                        if self.gone():
                            return
                        out: list[dict] = []
                        for event in batch:
                            if isinstance(event, Failed):
                                raise event.error
                            if isinstance(event, Done):
                                done = event
                            else:
                                out += encoder.feed(event)
                        if out:
                            yield out
                if done is None:
                    if self.gone():
                        return
                    raise APIError("The generation ended without a result.", 500, "server_error")
                yield encoder.close_open(incomplete=done.finish_reason == "length")
                encoder.add_usage(done.stats, self._reasoning_tokens(done))
                ran = 0
                for index in list(encoder.pending_mcp):
                    if self.gone():
                        return
                    yield await self._execute(index)
                    ran += 1
                if not self._continues(done, ran):
                    break
                await self._start_step()
            cut = done.finish_reason == "length" or self._out_of_tokens()
            encoder.finish(
                "max_output_tokens"
                if cut and not encoder.step_approvals and not encoder.step_function_calls
                else None
            )
        except APIError as error:
            self.error = error
            yield encoder.fail(error)
        except Exception as exc:
            log.exception("lms_jupyter: response %s failed", encoder.response["id"])
            self.error = APIError(f"The response failed: {exc}", 500, "server_error")
            yield encoder.fail(self.error)
        if self.gone():
            return
        await self._save()
        yield encoder.terminal()

    def _continues(self, done: Done, ran: int) -> bool:
        encoder = self.encoder
        assert encoder is not None  # begin() made it
        if encoder.step_approvals or encoder.step_function_calls or not ran:
            return False
        if done.finish_reason == "length" or self._out_of_tokens():
            return False
        return self.steps < MAX_STEPS

    def _out_of_tokens(self) -> bool:
        budget = self.request.max_output_tokens
        assert self.encoder is not None  # begin() made it
        return budget is not None and self.encoder.output_tokens >= budget

    def _reasoning_tokens(self, done: Done) -> int:
        """The step's reasoning re-tokenized (think tags excluded): the model's own count
        whenever its tokenization of that text is canonical, as it nearly always is. A
        remote engine's model is counted by the engine (its usage), or not at all."""
        text = done.answer.reasoning
        if not text:
            return 0
        assert self.prepared is not None  # the step that just finished was prepared
        tokenize = getattr(self.prepared.model, "tokenize", None)
        if tokenize is None:  # a remote engine's model: no tokenizer here
            return done.stats.reasoning_tokens or 0
        return len(tokenize(text, special=False))

    async def _execute(self, index: int) -> list[dict]:
        """Run one pending MCP call; its closing events."""
        assert self.encoder is not None  # begin() made it
        item = self.encoder.output[index]
        server = self.servers[item["server_label"]]
        self.calls_made += 1
        self._task = asyncio.ensure_future(
            mcp_tools.call_tool(server, item["name"], item["arguments"], self.api.mcp.timeout)
        )
        try:
            output = await self._task
        except McpCallError as exc:
            return self.encoder.finish_mcp_call(index, error=exc.error)
        except asyncio.CancelledError:
            if not self.cancelled:
                raise
            return self.encoder.finish_mcp_call(
                index,
                error={
                    "type": "mcp_protocol_error",
                    "code": -32800,
                    "message": "The request was cancelled.",
                },
            )
        finally:
            self._task = None
        return self.encoder.finish_mcp_call(index, output=output)

    async def _save(self) -> None:
        if not self.request.store:
            return
        assert self.encoder is not None  # begin() made it
        response = self.encoder.response
        conversation = [*self.context, *self.request.items, *response["output"]]
        try:
            await run_blocking(self.api.store.save, response, conversation)
        except APIError as error:  # not stored: say so rather than hand out a dead id
            log.error("lms_jupyter: %s", error.message)
            if response["status"] != "failed":
                self.error = error
                self.encoder.fail(error)

    # -- the two ways out ---------------------------------------------------------------------------
    async def sse(self):
        """Server-sent events: ``event: <type>`` + ``data: {...}``, no [DONE]."""
        async with aclosing(self.events()) as events:
            async for batch in events:
                yield [{"__event__": e["type"], **e} for e in batch]

    async def result(self) -> dict:
        """The finished response object (a plain request); a failure is raised."""
        async with aclosing(self.events()) as events:
            async for _batch in events:
                pass
        if self.gone():
            raise APIError("The request was cancelled.", 499, "invalid_request_error")
        if self.error is not None:
            raise self.error
        assert self.encoder is not None  # begin() made it
        return self.encoder.response
