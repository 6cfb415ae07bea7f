"""``lms-jupyter chat [MODEL] [-s SYSTEM] [--ttl N] [-p PROMPT] [--no-stats]``.

Like ``lms chat`` (LM Studio 0.3.27), it chats with the running server's model: the
first Jupyter server with lms-jupyter (or ``--url``/``--token``), whose model stays
loaded after the chat; with no server (or ``--local``), with this process's own,
freed on exit. Without MODEL it takes the first loaded chat model, else the first one
on disk. ``-p`` answers once and exits (for pipes and scripts).
"""

from __future__ import annotations

import argparse
import sys

from lms_jupyter.cli.terminal_chat.repl import Repl
from lms_jupyter.cli.terminal_chat.session import ChatSession, stats_text
from lms_jupyter.errors import APIError


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="lms-jupyter chat", description="Chat with a model in the terminal."
    )
    p.add_argument("model", nargs="?", help="the model (default: the first loaded one)")
    p.add_argument("-s", "--system-prompt", dest="system", help="the system prompt")
    p.add_argument("-p", "--prompt", help="answer this once and exit")
    p.add_argument("--ttl", type=float, help="idle seconds before a JIT-loaded model unloads")
    p.add_argument("--max-tokens", type=int, help="the longest answer, in tokens")
    p.add_argument("--temperature", type=float, help="sampling temperature")
    p.add_argument("--no-stats", action="store_true", help="no prediction stats line")
    p.add_argument("--url", help="the server (default: the running Jupyter server)")
    p.add_argument("--token", help="its token")
    p.add_argument("--local", action="store_true", help="this process's own models")
    return p


def _api(args):
    """(the API to chat through, its manager, the server connection or None)."""
    from lms_jupyter.cli.main import _server

    server = _server(args)
    if server is not None:
        from lms_jupyter.client.connected import ConnectedAPI

        return ConnectedAPI(server), server, server
    from lms_jupyter.api import OpenAICompatAPI
    from lms_jupyter.kernel import runtime

    manager = runtime.get_manager()
    return OpenAICompatAPI(manager), manager, None


def default_model(manager) -> str:
    """The first loaded chat model, else the first chat model on disk."""
    for model in manager.list_loaded():
        if model.capabilities.chat:
            return model.identifier
    for info in manager.catalog.models():
        if getattr(info, "type", "llm") == "llm":
            return info.key
    raise APIError("No chat model found: download one with `lms-jupyter get`.", 404)


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    server = None
    try:
        from lms_jupyter.cli.parser import CommandError

        try:
            api, manager, server = _api(args)
            model = args.model or default_model(manager)
        except CommandError as exc:
            print(f"Error: {exc.message}", file=sys.stderr)
            return exc.status
        session = ChatSession(api, model, args.system, args.ttl, args.max_tokens, args.temperature)
        if args.prompt is not None:
            answer = session.ask(args.prompt, lambda t: (sys.stdout.write(t), sys.stdout.flush()))
            sys.stdout.write("\n")
            if not args.no_stats:
                print(stats_text(answer), file=sys.stderr)
            return 130 if answer.interrupted else 0
        return Repl(session, stats=not args.no_stats).run()
    except APIError as exc:
        print(f"Error: {exc.message}", file=sys.stderr)
        return 1
    finally:
        from lms_jupyter.kernel import runtime

        if server is not None:
            server.shutdown()
        runtime.shutdown()
