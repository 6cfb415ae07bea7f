"""``lms-jupyter token create|ls|revoke``: scoped API tokens of a running Jupyter server.

Tokens live in the server (it hashes and stores them), so these commands are HTTP calls
to ``{base}lms/api/v1/tokens`` with the Jupyter token: the only identity allowed to
manage them. The server is the one named by ``--url``/``--token``, else the running
Jupyter server found in Jupyter's runtime files (``jpserver-*.json``) that serves
lms-jupyter. This is a minimal finder of its own (plain ``urllib``, so the CLI needs no
HTTP client); ``%lms connect``'s discovery may replace it.
"""

from __future__ import annotations

import json
import os
import re
import urllib.error
import urllib.request
from dataclasses import dataclass

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$", re.IGNORECASE)
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


class TokenCommandError(Exception):
    """One line for the user."""


def parse_duration(value: str) -> float:
    """``3600``, ``90m``, ``12h``, ``30d``, ``2w`` -> seconds (argparse type)."""
    import argparse

    match = _DURATION.match(value or "")
    if not match or float(match.group(1)) <= 0:
        raise argparse.ArgumentTypeError(
            f"must be a positive duration such as 3600, 90m, 12h or 30d (got {value!r})"
        )
    return float(match.group(1)) * _UNITS[match.group(2).lower()]


def add_token_parser(sub, parser_class) -> None:
    token = sub.add_parser(
        "token", help="scoped API tokens of a running server (create, ls, revoke)"
    )
    actions = token.add_subparsers(
        dest="token_command", metavar="create|ls|revoke", parser_class=parser_class
    )
    create = actions.add_parser("create", help="create a token (its secret is shown once)")
    create.add_argument("name", help="what the token is for, e.g. the app's name")
    create.add_argument(
        "--expires-in",
        type=parse_duration,
        metavar="DURATION",
        help="lifetime: seconds, or 90m, 12h, 30d, 2w (default: never)",
    )
    ls = actions.add_parser("ls", help="list tokens (never their secrets)")
    revoke = actions.add_parser("revoke", help="revoke a token at once")
    revoke.add_argument("id", help="the token's id (from token ls)")
    for command in (create, ls, revoke):
        command.add_argument(
            "--url",
            metavar="URL",
            help="the Jupyter server, with its base path (default: the "
            "running server found in Jupyter's runtime files)",
        )
        command.add_argument(
            "--token",
            metavar="TOKEN",
            help="its Jupyter token (default: $JUPYTER_TOKEN, or the runtime file's)",
        )
        command.add_argument("--json", action="store_true", help="print JSON")


# -- finding the server --------------------------------------------------------------------


@dataclass
class Server:
    url: str  # with the base path, ending in /
    token: str | None


def _request(
    method: str, url: str, token: str | None, body: dict | None = None, timeout: float = 30
) -> tuple[int, dict | None]:
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Accept": "application/json"}
    if data is not None:
        headers["Content-Type"] = "application/json"
    if token:
        headers["Authorization"] = f"token {token}"
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        try:
            return exc.code, json.loads(exc.read() or b"null")
        except ValueError:
            return exc.code, None


def running_servers() -> list[Server]:
    """Running Jupyter servers from the runtime files, newest first."""
    try:
        from jupyter_server.serverapp import list_running_servers
    except ImportError:
        return []
    found = list(list_running_servers())
    found.sort(key=lambda info: info.get("pid", 0), reverse=True)
    return [Server(info["url"].rstrip("/") + "/", info.get("token") or None) for info in found]


def find_server(url: str | None, token: str | None) -> Server:
    """``--url``/``--token``, else the newest running server that serves lms-jupyter."""
    token = token or os.environ.get("JUPYTER_TOKEN") or None
    if url:
        return Server(url.rstrip("/") + "/", token)
    servers = running_servers()
    if not servers:
        raise TokenCommandError(
            "No running Jupyter server found; start one (jupyter lab) or give --url and --token."
        )
    for server in servers:
        try:
            status, _ = _request(
                "GET", f"{server.url}lms/api/v1/tokens", token or server.token, timeout=5
            )
        except OSError:
            continue
        if status != 404:
            return Server(server.url, token or server.token)
    raise TokenCommandError(
        "No running Jupyter server serves lms-jupyter (checked "
        f"{', '.join(s.url for s in servers)}); give --url."
    )


# -- the commands ---------------------------------------------------------------------------


def _call(server: Server, method: str, path: str, body: dict | None = None) -> dict:
    url = f"{server.url}lms/api/v1/tokens{path}"
    try:
        status, answer = _request(method, url, server.token, body)
    except OSError as exc:
        raise TokenCommandError(
            f"Cannot reach the server at {server.url}: {getattr(exc, 'reason', exc)}"
        ) from None
    if status >= 400:
        message = (
            (answer or {}).get("error", {}).get("message") if isinstance(answer, dict) else None
        )
        if status == 401:
            message = (
                message or "Not authenticated."
            ) + " Give the Jupyter token with --token or $JUPYTER_TOKEN."
        raise TokenCommandError(message or f"The server answered {status}.")
    return answer or {}


def _when(value: str | None) -> str:
    return value.replace("T", " ").replace("Z", " UTC") if value else "never"


def run_token_command(args, console) -> None:
    if args.token_command is None:
        raise TokenCommandError("Give a token command: create, ls or revoke (-h for help).")
    server = find_server(args.url, args.token)
    if args.token_command == "create":
        body = {"name": args.name}
        if args.expires_in:
            body["expires_in"] = args.expires_in
        created = _call(server, "POST", "", body)
        if args.json:
            console.json(created)
            return
        console.print(created["token"])
        console.note(
            f'Created API token "{created["name"]}" (id {created["id"]}, expires '
            f"{_when(created.get('expires_at'))}). It is shown only now: store it "
            "where the app reads it. It works on the /lms routes only."
        )
    elif args.token_command == "ls":
        rows = _call(server, "GET", "").get("data", [])
        if args.json:
            console.json(rows)
            return
        if not rows:
            console.print("No API tokens. Create one with: lms-jupyter token create NAME")
            return
        header = ("ID", "NAME", "CREATED", "LAST USED", "EXPIRES")
        table = [header] + [
            (
                r["id"],
                r["name"],
                _when(r["created_at"]),
                _when(r.get("last_used_at")),
                "expired" if r.get("expired") else _when(r.get("expires_at")),
            )
            for r in rows
        ]
        widths = [max(len(str(row[i])) for row in table) for i in range(len(header))]
        console.print(
            "\n".join(
                "  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=False)).rstrip()
                for row in table
            )
        )
    elif args.token_command == "revoke":
        from urllib.parse import quote

        revoked = _call(server, "DELETE", f"/{quote(args.id, safe='')}")
        if args.json:
            console.json(revoked)
            return
        console.print(f'Revoked API token "{revoked["name"]}" ({revoked["id"]}).')
