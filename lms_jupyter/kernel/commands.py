"""The ``lms`` subcommands, shared by ``%lms`` in a kernel and the ``lms-jupyter`` script.

One argparse parser defines them; a :class:`Console` says where output goes (a
terminal, a cell) and how load progress is drawn. User mistakes raise
:class:`CommandError`, one line, never SystemExit.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Callable

from ..api import requests, views
from ..errors import APIError
from ..models.memory import parse_gpu_offload
from . import listing
from .progress import LoadCancelled, TerminalProgress, run_load

RESERVED = {
    "get": "`get` (downloading models) is not available yet in lms-jupyter; put GGUF files "
           "under the models folder instead.",
    "log": "`log stream` is not available yet in lms-jupyter.",
}


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


def build_parser(prog: str = "lms-jupyter") -> argparse.ArgumentParser:
    parser = _Parser(prog=prog, description="LM Studio's lms commands for lms-jupyter.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    ls = sub.add_parser("ls", help="list the models on disk")
    kind = ls.add_mutually_exclusive_group()
    kind.add_argument("--llm", action="store_true", help="only language models")
    kind.add_argument("--embedding", action="store_true", help="only embedding models")
    ls.add_argument("--variants", action="store_true", help="list every quantization")
    ls.add_argument("--json", action="store_true", help="print JSON")

    ps = sub.add_parser("ps", help="list the loaded models")
    ps.add_argument("--json", action="store_true", help="print JSON")

    load = sub.add_parser("load", help="load a model into memory")
    load.add_argument("model", help="model key, publisher/key, optionally @quantization")
    load.add_argument("-c", "--context-length", type=int, metavar="N")
    load.add_argument("--gpu", type=gpu_share, metavar="off|max|0..1",
                      help="share of the layers to offload to the GPU")
    load.add_argument("--ttl", type=float, metavar="SECONDS",
                      help="unload after this many idle seconds")
    load.add_argument("--identifier", metavar="NAME", help="name to refer to this instance")
    load.add_argument("--estimate-only", action="store_true",
                      help="print the memory estimate without loading")
    load.add_argument("--json", action="store_true", help="print JSON (with --estimate-only)")

    unload = sub.add_parser("unload", help="unload a model")
    unload.add_argument("identifier", nargs="?")
    unload.add_argument("-a", "--all", action="store_true", help="unload every model")

    sub.add_parser("get", help="(not available yet) download a model", add_help=False) \
        .add_argument("rest", nargs=argparse.REMAINDER)
    sub.add_parser("log", help="(not available yet) stream the logs", add_help=False) \
        .add_argument("rest", nargs=argparse.REMAINDER)

    history = sub.add_parser("history", help="show the %%%%chat conversation (kernel only)")
    history.add_argument("--json", action="store_true", help="print the messages as JSON")
    history.add_argument("--clear", action="store_true", help="forget the conversation")

    sub.add_parser("widget", help="model manager widget (kernel only)")
    chat_widget = sub.add_parser("chat-widget", help="chat widget (kernel only)")
    chat_widget.add_argument("--model", metavar="M")
    chat_widget.add_argument("--system", metavar="TEXT")
    return parser


class Console:
    """Where command output goes: stdout, and a progress view for loads."""

    load_hint = "lms-jupyter load <model>"

    def print(self, text: str = "") -> None:
        print(text, file=sys.stdout, flush=True)

    def json(self, value) -> None:
        self.print(json.dumps(value, indent=2, ensure_ascii=False))

    def progress(self, title: str):
        return TerminalProgress(title)


class Commands:
    """The subcommands themselves, against one ModelManager."""

    def __init__(self, manager_factory: Callable, console: Console,
                 extra: dict[str, Callable] | None = None):
        self._manager_factory = manager_factory
        self.console = console
        self.extra = extra or {}  # kernel-only commands (history, widgets)

    @property
    def manager(self):
        return self._manager_factory()

    def run(self, args: argparse.Namespace):
        command = args.command
        if command is None:
            raise CommandError("Give a command: ls, ps, load, unload, history, widget, "
                               "chat-widget (-h for help).", status=2)
        if command in RESERVED:
            raise CommandError(RESERVED[command])
        if command in self.extra:
            return self.extra[command](args)
        handler = getattr(self, "cmd_" + command.replace("-", "_"), None)
        if handler is None:
            raise CommandError(f"`{command}` is only available in a Jupyter kernel "
                               f"(%lms {command}).")
        try:
            return handler(args)
        except APIError as exc:
            raise CommandError(exc.message) from None

    # -- ls / ps -----------------------------------------------------------------------
    def cmd_ls(self, args) -> None:
        manager = self.manager
        models = manager.catalog.models()
        kinds = ("llm",) if args.llm else ("embedding",) if args.embedding \
            else ("llm", "embedding")
        models = [m for m in models if views.v1_type(m) in kinds]
        if args.json:
            self.console.json([views.model_json(m) for m in models])
            return
        lines = listing.ls_lines(models, manager.list_loaded(), variants=args.variants,
                                 kinds=kinds)
        self.console.print("\n".join(lines))

    def cmd_ps(self, args) -> None:
        loaded = self.manager.list_loaded()
        if args.json:
            self.console.json([views.ps_row(m) for m in loaded])
            return
        self.console.print("\n".join(listing.ps_lines(loaded, self.console.load_hint)))

    # -- load / unload -----------------------------------------------------------------
    @staticmethod
    def load_request(args):
        """``lms load``'s flags as the same typed request the HTTP API builds (one set of
        rules for both)."""
        fields = {"model": args.model, "identifier": args.identifier,
                  "context_length": args.context_length, "ttl": args.ttl, "gpu": args.gpu}
        return requests.load_request({k: v for k, v in fields.items() if v is not None})

    def cmd_load(self, args) -> None:
        manager = self.manager
        request = self.load_request(args)
        info, variant = manager.resolve_model(request.model)
        if args.estimate_only:
            return self._estimate(manager, request, info, args.json)
        if args.json:
            raise CommandError("--json goes with --estimate-only.", status=2)
        view = self.console.progress(f"Loading {info.key}")
        started = time.perf_counter()
        try:
            model = run_load(lambda progress: manager.load(request, progress=progress), view,
                             discard=lambda m: manager.unload(m.identifier))
        except LoadCancelled:
            raise CommandError("Load cancelled.") from None
        except APIError as exc:
            raise CommandError(exc.message) from None
        elapsed = time.perf_counter() - started
        ttl = f", idle TTL {listing.human_duration(model.ttl)}" if model.ttl else ""
        view.finish(f"Model loaded successfully in {elapsed:.2f}s. "
                    f"({listing.human_size(variant.size_bytes)}, context "
                    f"{model.config.context_length}{ttl})\n"
                    f"To use the model, use the identifier \"{model.identifier}\".")

    def _estimate(self, manager, request, info, as_json: bool) -> None:
        result = manager.estimate(request.model, context_length=request.context_length,
                                  gpu=request.gpu)
        if as_json:
            self.console.json(result)
            return
        fits = result.get("fits")
        verdict = ("This model may be loaded based on your resource guardrails settings."
                   if fits else
                   "This model will fail to load based on your resource guardrails settings.")
        lines = [f"Model: {info.publisher.lower()}/{info.key}",
                 f"Estimated GPU Memory:   "
                 f"{listing.human_size(result.get('estimated_gpu_bytes', 0))}",
                 f"Estimated Total Memory: "
                 f"{listing.human_size(result.get('estimated_total_bytes'))}"]
        if result.get("available_bytes") is not None:
            lines.append(f"Available Memory:       "
                         f"{listing.human_size(result['available_bytes'])}")
        if str(result.get("confidence", "")).lower() == "low":
            lines.append("Confidence: LOW")
        lines += ["", f"Estimate: {verdict}"]
        self.console.print("\n".join(lines))

    def cmd_unload(self, args) -> None:
        manager = self.manager
        if args.all:
            if args.identifier:
                raise CommandError("Give an identifier or --all, not both.", status=2)
            models = manager.unload_all()
            if not models:
                self.console.print("No models are loaded.")
                return
            names = ", ".join(m.identifier for m in models)
            self.console.print(f"Unloaded {len(models)} model{'s' if len(models) != 1 else ''}:"
                               f" {names}.")
            return
        identifier = args.identifier
        if not identifier:
            loaded = manager.list_loaded()
            if not loaded:
                raise CommandError("No models are loaded.")
            if len(loaded) != 1:
                which = ", ".join(m.identifier for m in loaded) or "none"
                raise CommandError(f"Give the identifier of the model to unload, or --all "
                                   f"(loaded: {which}).", status=2)
            identifier = loaded[0].identifier
        model = manager.unload(identifier)
        self.console.print(f"Model \"{model.identifier}\" unloaded.")
