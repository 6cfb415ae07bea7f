"""``lms-jupyter``: the ``lms`` subcommands in a terminal.

Like LM Studio's ``lms``, which always talks to the running daemon, the commands act on
the running Jupyter server's models: the first server with the extension found in
Jupyter's runtime files (``jupyter server list``), or ``--url``/``--token``. ``ps``,
``load``, ``unload``, ``get`` and ``log stream`` then change or show what the server
holds, over its HTTP API. With no server running (or ``--local``, or
``LMS_JUPYTER_CONNECT=off``) they use this process's own models: ``ls`` and
``load --estimate-only`` read the GGUF files on disk, and a model loaded here is freed
when the command exits (a note on stderr says so).
"""

from __future__ import annotations

import os
import sys

from lms_jupyter.cli.commands import Commands, Console
from lms_jupyter.cli.parser import CommandError, HelpShown, build_parser


def _server(args):
    """The server to talk to (a ConnectedManager), or None for this process's models."""
    from lms_jupyter.client import discovery
    from lms_jupyter.client.connected import ConnectedManager

    if args.local:
        return None
    if args.url:
        try:
            return ConnectedManager(discovery.for_url(args.url, args.token))
        except discovery.DiscoveryError as exc:
            raise CommandError(str(exc)) from None
    if os.environ.get("LMS_JUPYTER_CONNECT", "").strip().lower() in (
        "0",
        "off",
        "no",
        "none",
        "false",
    ):
        return None
    target = discovery.first_server()
    if target is not None and args.token:
        target.token = args.token
    return ConnectedManager(target) if target is not None else None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["chat"]:  # the interactive terminal chat has its own options
        from lms_jupyter.cli.terminal_chat import main as chat_main

        return chat_main(argv[1:])
    parser = build_parser("lms-jupyter")
    parser.add_argument(
        "--url",
        metavar="URL",
        help="the server to act on: an LM Studio API root or a Jupyter "
        "server URL (default: the running Jupyter server)",
    )
    parser.add_argument(
        "--token",
        metavar="TOKEN",
        help="its token (default: found with the server, or $LMS_JUPYTER_TOKEN / $JUPYTER_TOKEN)",
    )
    parser.add_argument(
        "--local", action="store_true", help="use this process's own models, not a server's"
    )
    server = None
    try:
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return 2
        from lms_jupyter.kernel import runtime

        if args.command in ("connect", "disconnect"):
            raise CommandError(
                f"`{args.command}` is for kernels (%lms {args.command}); "
                "here, use --url/--token or --local."
            )
        server = None if args.command == "get" and getattr(args, "select", False) else _server(args)
        if server is not None:
            from lms_jupyter.client.connected import ConnectedAPI

            commands = Commands(
                lambda: server, Console(), api_factory=lambda: ConnectedAPI(server), parser=parser
            )
        else:
            commands = Commands(runtime.get_manager, Console(), parser=parser)
        commands.run(args)
        if server is None and args.command == "load" and not args.estimate_only and not args.local:
            print(
                "(No running Jupyter server with lms-jupyter was found: the model was "
                "loaded in this process and is freed as the command exits.)",
                file=sys.stderr,
            )
        return 0
    except HelpShown:
        return 0
    except CommandError as exc:
        print(f"Error: {exc.message}", file=sys.stderr)
        return exc.status
    except KeyboardInterrupt:
        print("Interrupted.", file=sys.stderr)
        return 130
    finally:
        from lms_jupyter.kernel import runtime

        if server is not None:
            server.shutdown()
        runtime.shutdown()


if __name__ == "__main__":
    sys.exit(main())
