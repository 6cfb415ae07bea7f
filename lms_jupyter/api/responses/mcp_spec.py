"""The ``mcp`` entries of a Responses body as typed values: which server, which tools it may
call (``allowed_tools``), which calls need the user's approval (``require_approval``), and the
echo of those settings in the response object."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlsplit

from lms_jupyter.errors import bad_request

# -- MCP tool settings ----------------------------------------------------------------------


@dataclass(frozen=True)
class ToolFilter:
    """OpenAI's ``{tool_names, read_only}`` filter (a plain list is ``tool_names``)."""

    names: frozenset[str] | None = None
    read_only: bool | None = None

    def matches(self, name: str, read_only: bool = False) -> bool:
        return (self.names is None or name in self.names) and (
            self.read_only is None or self.read_only == read_only
        )


@dataclass(frozen=True)
class ApprovalRule:
    """``require_approval``: "always" (OpenAI's default), "never", or filters."""

    always: ToolFilter | None = ToolFilter()
    never: ToolFilter | None = None

    def needs_approval(self, name: str, read_only: bool = False) -> bool:
        if self.never is not None and self.never.matches(name, read_only):
            return False
        if self.always is not None:
            return self.always.matches(name, read_only)
        return True


@dataclass(frozen=True)
class McpServerSpec:
    """One ``{"type": "mcp"}`` tool. ``headers`` go to the MCP server only: they are
    kept out of ``repr`` (logs), of the response's ``tools`` echo and of the store."""

    index: int  # position in ``tools``, for error params
    label: str
    url: str
    allowed: ToolFilter | None = None
    approval: ApprovalRule = ApprovalRule()
    headers: dict = field(default_factory=dict, repr=False, compare=False)
    description: str | None = None

    @property
    def param(self) -> str:
        return f"tools[{self.index}]"

    def echo(self) -> dict:
        """The tool as the response object shows it (no headers, no authorization)."""
        out = {
            "type": "mcp",
            "server_label": self.label,
            "server_url": self.url,
            "allowed_tools": sorted(self.allowed.names)
            if self.allowed and self.allowed.names is not None
            else None,
            "require_approval": _approval_echo(self.approval),
        }
        if self.description:
            out["server_description"] = self.description
        return out


def _approval_echo(rule: ApprovalRule):
    if rule.never is None and rule.always == ToolFilter():
        return "always"
    if rule.always is None and rule.never == ToolFilter():
        return "never"
    out = {}
    for key in ("always", "never"):
        f = getattr(rule, key)
        if f is not None:
            out[key] = {
                k: v
                for k, v in (
                    ("tool_names", sorted(f.names) if f.names is not None else None),
                    ("read_only", f.read_only),
                )
                if v is not None
            }
    return out


def _tool_filter(value, param: str) -> ToolFilter:
    if isinstance(value, list):
        value = {"tool_names": value}
    if not isinstance(value, dict):
        raise bad_request(
            f"'{param}' must be an array of tool names or an object with "
            "'tool_names' and/or 'read_only'.",
            param,
        )
    names = value.get("tool_names")
    if names is not None and not (
        isinstance(names, list) and all(isinstance(n, str) and n for n in names)
    ):
        raise bad_request(f"'{param}.tool_names' must be an array of tool names.", param)
    read_only = value.get("read_only")
    if read_only is not None and not isinstance(read_only, bool):
        raise bad_request(f"'{param}.read_only' must be a boolean.", param)
    return ToolFilter(frozenset(names) if names is not None else None, read_only)


def _approval(value, param: str) -> ApprovalRule:
    if value is None or value == "always":
        return ApprovalRule()
    if value == "never":
        return ApprovalRule(always=None, never=ToolFilter())
    if not isinstance(value, dict) or not set(value) <= {"always", "never"} or not value:
        raise bad_request(
            f"'{param}' must be 'always', 'never' or an object with 'always' "
            "and/or 'never' tool filters.",
            param,
        )
    always = _tool_filter(value["always"], f"{param}.always") if "always" in value else None
    never = _tool_filter(value["never"], f"{param}.never") if "never" in value else None
    return ApprovalRule(always, never)


def _mcp_tool(tool: dict, i: int) -> McpServerSpec:
    where = f"tools[{i}]"
    label = tool.get("server_label")
    if not isinstance(label, str) or not label.strip():
        raise bad_request(
            f"{where}.server_label must be a non-empty string.", f"{where}.server_label"
        )
    url = tool.get("server_url")
    if url is None and tool.get("connector_id") is not None:
        raise bad_request(
            "MCP connectors (connector_id) are OpenAI-hosted; give the MCP "
            "server's own 'server_url'.",
            f"{where}.connector_id",
        )
    if not isinstance(url, str) or not url.strip():
        raise bad_request(
            f"Tool for MCP server {label!r} requires a non-empty 'server_url'.",
            f"{where}.server_url",
        )
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise bad_request(
            f"{where}.server_url must be an http:// or https:// URL (got {url!r}).",
            f"{where}.server_url",
        )
    if parts.username is not None or parts.password is not None:
        raise bad_request(
            f"{where}.server_url must not contain credentials; send them in "
            "'headers' or 'authorization'.",
            f"{where}.server_url",
        )
    headers = tool.get("headers") or {}
    if not isinstance(headers, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
    ):
        raise bad_request(f"{where}.headers must map header names to strings.", f"{where}.headers")
    headers = dict(headers)
    token = tool.get("authorization")
    if token is not None:
        if not isinstance(token, str) or not token:
            raise bad_request(
                f"{where}.authorization must be a non-empty string.", f"{where}.authorization"
            )
        headers["Authorization"] = f"Bearer {token}"
    allowed = tool.get("allowed_tools")
    description = tool.get("server_description")
    if description is not None and not isinstance(description, str):
        raise bad_request(
            f"{where}.server_description must be a string.", f"{where}.server_description"
        )
    return McpServerSpec(
        i,
        label.strip(),
        url.strip(),
        _tool_filter(allowed, f"{where}.allowed_tools") if allowed is not None else None,
        _approval(tool.get("require_approval"), f"{where}.require_approval"),
        headers,
        description,
    )


# -- input items ----------------------------------------------------------------------------
