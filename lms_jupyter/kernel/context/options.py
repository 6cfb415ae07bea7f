"""The command-line options of notebook context: ``%%chat``'s ``--no-context``,
``--context-tokens`` and ``--show-prompt``, and the ``%lms fix`` / ``%lms explain``
subcommands (added to the shared ``lms`` parser; kernel only)."""

from __future__ import annotations

import argparse

from lms_jupyter.kernel.context.assist import DEFAULT_ASSIST_MAX_TOKENS
from lms_jupyter.kernel.context.render import DEFAULT_CONTEXT_TOKENS


def _positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer (got {value!r})") from None
    if number <= 0:
        raise argparse.ArgumentTypeError(f"must be positive (got {value})")
    return number


def _cell_number(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a cell number (got {value!r})") from None


def add_chat_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--no-context",
        action="store_true",
        help="send the cell as written: no {name}, {In[n]}, {Err} filling",
    )
    parser.add_argument(
        "--context-tokens",
        type=_positive_int,
        metavar="N",
        help=f"cap for each filled-in value (default {DEFAULT_CONTEXT_TOKENS:,} tokens)",
    )
    parser.add_argument(
        "--show-prompt",
        action="store_true",
        help="print the message as sent and what each value took",
    )


def add_assist_parsers(parser: argparse.ArgumentParser) -> None:
    """Add ``fix`` and ``explain`` to the ``%lms`` parser (not the terminal script's: they
    need a kernel's cells)."""
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    fix = sub.add_parser(
        "fix",
        help="suggest a corrected cell for the last error, or cell "
        "N's, as a new cell below (kernel only; never run)",
    )
    explain = sub.add_parser(
        "explain", help="explain a cell (default: the previous one) and its error (kernel only)"
    )
    for command in (fix, explain):
        command.add_argument(
            "cell",
            nargs="?",
            type=_cell_number,
            metavar="N",
            help="execution count (negative: counted back from here)",
        )
        command.add_argument("--model", "-m", metavar="M", help="model key or identifier")
        command.add_argument(
            "--max-tokens",
            type=_positive_int,
            metavar="N",
            default=DEFAULT_ASSIST_MAX_TOKENS,
            help=f"answer length cap (default {DEFAULT_ASSIST_MAX_TOKENS})",
        )
        command.add_argument("--temperature", "-t", type=float, metavar="T")
        command.add_argument("--seed", type=int, metavar="N")
        command.add_argument("--show-prompt", action="store_true", help="print the request sent")
