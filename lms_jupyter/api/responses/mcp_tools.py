"""Remote MCP servers for the Responses API: who may be called, listing tools, calling them.

A server that fetches any URL a request names is an SSRF hole, so this is opt-in (as in
LM Studio): :class:`McpPolicy` refuses ``mcp`` tools unless the server was started with
``--LMSJupyterApp.allow_remote_mcp=True``, and even then refuses URLs whose host resolves
to a loopback, private, link-local or otherwise non-public address (every address is
checked) unless the URL matches ``LMSJupyterApp.remote_mcp_allowed_urls``, so local MCP
servers still work once named (LM Studio refuses them outright). Redirects are followed
only within the same origin (the ``mcp`` SDK's rule), so a public server cannot bounce
the request inward. What remains: a hostname may resolve differently between our check
and the connection (DNS rebinding); allow-list exact URLs where that matters.

The client is the official ``mcp`` SDK (2.x) over Streamable HTTP, imported only when an
MCP tool is used. Each operation opens its own short session (initialize, then list or
call) under one deadline, so a slow or unreachable server costs at most the timeout and
never hangs a response. Request ``headers`` go to the MCP server and nowhere else: not
into logs, errors, the response's ``tools`` echo or the store.
"""

from __future__ import annotations

import ast
import asyncio
import ipaddress
import json
import logging
import socket
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from lms_jupyter.api.responses.mcp_spec import McpServerSpec
from lms_jupyter.errors import APIError, bad_request

try:
    _GROUP = BaseExceptionGroup
except NameError:  # Python 3.10: anyio's backport (mypy checks as 3.11: a redefinition)
    from exceptiongroup import BaseExceptionGroup as _GROUP  # type: ignore[no-redef]

log = logging.getLogger(__name__)

ENABLE_HINT = (
    "Start Jupyter with --LMSJupyterApp.allow_remote_mcp=True (or set "
    "c.LMSJupyterApp.allow_remote_mcp = True in a Jupyter config file)"
)
RESOLVE_TIMEOUT = 5.0
MAX_LIST_PAGES = 20
MAX_OUTPUT_CHARS = 100_000  # a tool's output fed back to the model


# -- policy ---------------------------------------------------------------------------------


def _default_port(scheme: str) -> int:
    return 443 if scheme == "https" else 80


def url_allowed(url: str, prefix: str) -> bool:
    """Whether ``url`` is under the allow-list entry ``prefix``: same scheme and host,
    the same port (any port when the prefix names none), and a path under the prefix's
    path at a segment boundary. Compared as parsed URLs, not strings, so
    ``http://127.0.0.1.evil.example`` is not under ``http://127.0.0.1``."""
    try:
        u, p = urlsplit(url), urlsplit(prefix.strip())
        u_port, p_port = u.port, p.port
    except ValueError:
        return False
    if not p.hostname or u.scheme != p.scheme or (u.hostname or "") != p.hostname:
        return False
    if p_port is not None and (u_port or _default_port(u.scheme)) != p_port:
        return False
    base = p.path.rstrip("/")
    return not base or u.path == base or u.path.startswith(base + "/")


def _non_public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not ip.is_global or ip.is_multicast


def url_list(values) -> tuple[str, ...]:
    """Allow-list entries as given on a command line: repeated flags give a list, and a
    quoted Python list (``"['http://a', 'http://b']"``, which jupyter_server hands an
    extension as one string) is unpacked."""
    out: list[str] = []
    for value in values or ():
        text = str(value).strip()
        if text.startswith("["):
            try:
                parsed = ast.literal_eval(text)
            except (ValueError, SyntaxError):
                parsed = None
            if isinstance(parsed, (list, tuple)):
                out += [str(v).strip() for v in parsed if str(v).strip()]
                continue
        if text:
            out.append(text)
    return tuple(out)


@dataclass(frozen=True)
class McpPolicy:
    """Whether requests may name MCP servers, which ones, and how long they may take."""

    enabled: bool = False
    allowed_urls: tuple[str, ...] = ()
    timeout: float = 30.0

    async def check(self, servers: list[McpServerSpec]) -> None:
        """Refuse (400) MCP tools while disabled, and URLs that reach this machine or its
        network unless allow-listed. Resolving is bounded by ``RESOLVE_TIMEOUT``."""
        if not servers:
            return
        if not self.enabled:
            raise APIError(
                f"Remote MCP servers are disabled on this server. {ENABLE_HINT} "
                "to let requests call MCP servers by URL.",
                400,
                "invalid_request_error",
                servers[0].param,
                "mcp_disabled",
            )
        for server in servers:
            if any(url_allowed(server.url, prefix) for prefix in self.allowed_urls):
                continue
            for address in await self._addresses(server):
                if _non_public(address):
                    raise APIError(
                        f"MCP server URL {server.url} resolves to {address}, a loopback, "
                        "private or link-local address. Such URLs are refused unless they "
                        "match a prefix in --LMSJupyterApp.remote_mcp_allowed_urls (e.g. "
                        "\"['http://127.0.0.1:8001/mcp']\").",
                        400,
                        "invalid_request_error",
                        f"{server.param}.server_url",
                        "mcp_url_not_allowed",
                    )

    async def _addresses(self, server: McpServerSpec) -> list[str]:
        parts = urlsplit(server.url)
        port = parts.port or _default_port(parts.scheme)
        loop = asyncio.get_running_loop()
        try:
            infos = await asyncio.wait_for(
                loop.getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM), RESOLVE_TIMEOUT
            )
        except (OSError, asyncio.TimeoutError) as exc:
            raise bad_request(
                f"Could not resolve the MCP server's host {parts.hostname!r}: "
                f"{exc or 'timed out'}.",
                f"{server.param}.server_url",
            ) from None
        return sorted({str(info[4][0]) for info in infos})


# -- the client -----------------------------------------------------------------------------


@dataclass
class McpTool:
    """A tool an MCP server listed."""

    server: str  # server_label
    name: str
    input_schema: dict = field(default_factory=dict)
    description: str | None = None
    annotations: dict | None = None

    @property
    def read_only(self) -> bool:
        return bool((self.annotations or {}).get("readOnlyHint"))

    def listed(self) -> dict:
        """The tool in an ``mcp_list_tools`` item."""
        return {
            "name": self.name,
            "input_schema": self.input_schema,
            "description": self.description,
            "annotations": self.annotations,
        }

    @classmethod
    def from_listed(cls, server: str, entry: dict) -> McpTool:
        return cls(
            server,
            entry["name"],
            entry.get("input_schema") or {},
            entry.get("description"),
            entry.get("annotations"),
        )


class McpCallError(Exception):
    """A failed call, with its ``mcp_call.error`` object (OpenAI's McpToolCallError)."""

    def __init__(self, error: dict):
        super().__init__(error.get("message") or str(error.get("content")))
        self.error = error


def _leaf(exc: BaseException) -> BaseException:
    """The first real error inside the SDK's (nested) exception groups."""
    while isinstance(exc, _GROUP) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def _describe(exc: BaseException, timeout: float) -> dict:
    """An error as OpenAI's McpToolCallError (``http_error`` / ``mcp_protocol_error``)."""
    import httpx2
    from mcp.shared.exceptions import MCPError

    exc = _leaf(exc)
    if isinstance(exc, TimeoutError):
        return {
            "type": "http_error",
            "code": 504,
            "message": f"The MCP server did not answer within {timeout:g} s.",
        }
    if isinstance(exc, httpx2.HTTPStatusError):
        return {
            "type": "http_error",
            "code": exc.response.status_code,
            "message": f"The MCP server answered HTTP {exc.response.status_code}.",
        }
    if isinstance(exc, httpx2.TransportError):
        return {
            "type": "http_error",
            "code": 502,
            "message": f"Could not reach the MCP server: {exc or type(exc).__name__}.",
        }
    if isinstance(exc, MCPError):
        return {"type": "mcp_protocol_error", "code": exc.code, "message": exc.message}
    return {"type": "mcp_protocol_error", "code": -32603, "message": f"{type(exc).__name__}: {exc}"}


@asynccontextmanager
async def _session(server: McpServerSpec, timeout: float):
    try:
        import httpx2
        from mcp.client.session import ClientSession
        from mcp.client.streamable_http import streamable_http_client
    except ImportError:  # pragma: no cover - mcp is a dependency; a broken install
        raise APIError(
            "Remote MCP needs the 'mcp' package (pip install 'mcp>=2').",
            500,
            "server_error",
            server.param,
        ) from None
    async with httpx2.AsyncClient(headers=server.headers, timeout=httpx2.Timeout(timeout)) as http:
        async with streamable_http_client(server.url, http_client=http) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                yield session


async def list_tools(server: McpServerSpec, timeout: float) -> list[McpTool]:
    """The server's tools, filtered by ``allowed_tools``. A failure is OpenAI's 424
    (Failed Dependency) error, within ``timeout`` seconds."""
    import anyio

    tools: list[McpTool] = []
    try:
        with anyio.fail_after(timeout):
            async with _session(server, timeout) as session:
                cursor = None
                for _page in range(MAX_LIST_PAGES):
                    if cursor is None:
                        result = await session.list_tools()
                    else:
                        from mcp_types import PaginatedRequestParams

                        result = await session.list_tools(
                            params=PaginatedRequestParams(cursor=cursor)
                        )
                    for tool in result.tools:
                        annotations = (
                            tool.annotations.model_dump(by_alias=True, exclude_none=True)
                            if tool.annotations is not None
                            else None
                        )
                        tools.append(
                            McpTool(
                                server.label,
                                tool.name,
                                tool.input_schema or {},
                                tool.description or None,
                                annotations,
                            )
                        )
                    cursor = result.next_cursor
                    if cursor is None:
                        break
    except APIError:
        raise
    except BaseException as exc:
        if isinstance(exc, (KeyboardInterrupt, SystemExit, asyncio.CancelledError)):
            raise
        error = _describe(exc, timeout)
        log.warning(
            "MCP server %r (%s): listing tools failed: %s",
            server.label,
            server.url,
            error["message"],
        )
        raise APIError(
            f"Error retrieving tool list from MCP server {server.label!r}: {error['message']}",
            424,
            "external_connector_error",
            server.param,
            "http_error",
        ) from None
    allowed = server.allowed
    return [t for t in tools if allowed is None or allowed.matches(t.name, t.read_only)]


def _output_text(result) -> str:
    texts = []
    for part in result.content:
        kind = getattr(part, "type", None)
        texts.append(part.text if kind == "text" else f"[{kind} content]")
    text = "\n".join(texts)
    if not text and result.structured_content is not None:
        text = json.dumps(result.structured_content)
    return text[:MAX_OUTPUT_CHARS]


async def call_tool(server: McpServerSpec, name: str, arguments: str, timeout: float) -> str:
    """Run one tool; its text output, or :class:`McpCallError` (within ``timeout``)."""
    import anyio

    try:
        parsed = json.loads(arguments or "{}")
    except ValueError as exc:
        raise McpCallError(
            {
                "type": "mcp_protocol_error",
                "code": -32602,
                "message": f"The arguments are not JSON: {exc}",
            }
        ) from None
    if not isinstance(parsed, dict):
        raise McpCallError(
            {
                "type": "mcp_protocol_error",
                "code": -32602,
                "message": "The arguments must be a JSON object.",
            }
        )
    try:
        with anyio.fail_after(timeout):
            async with _session(server, timeout) as session:
                result = await session.call_tool(name, parsed)
    except APIError:
        raise
    except BaseException as exc:
        if isinstance(exc, (KeyboardInterrupt, SystemExit, asyncio.CancelledError)):
            raise
        error = _describe(exc, timeout)
        log.warning("MCP server %r: calling %s failed: %s", server.label, name, error["message"])
        raise McpCallError(error) from None
    if result.is_error:
        raise McpCallError(
            {
                "type": "mcp_tool_execution_error",
                "content": [{"type": "text", "text": _output_text(result)}],
            }
        )
    return _output_text(result)
