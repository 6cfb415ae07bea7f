"""``lms-jupyter``: the ``lms`` subcommands in a terminal.

The commands act on this process's own ModelManager: ``ls`` lists the models on disk,
``load`` checks that a model loads (and ``--estimate-only`` what it would need); models
loaded here are freed when the command exits. In a notebook, ``%lms`` runs the same
commands against the kernel's models.
"""
from __future__ import annotations

import sys

from .kernel.commands import CommandError, Commands, Console, HelpShown, build_parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser("lms-jupyter")
    try:
        args = parser.parse_args(sys.argv[1:] if argv is None else argv)
        if args.command is None:
            parser.print_help()
            return 2
        from .kernel import runtime

        commands = Commands(runtime.get_manager, Console(), parser=parser)
        commands.run(args)
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
        from .kernel import runtime

        runtime.shutdown()


if __name__ == "__main__":
    sys.exit(main())
