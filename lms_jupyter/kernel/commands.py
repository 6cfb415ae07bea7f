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

from ..errors import APIError
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


def gpu_ratio(value: str) -> float:
    """``--gpu off|max|0..1`` as the fraction of layers to offload."""
    text = value.strip().lower()
    if text == "off":
        return 0.0
    if text == "max":
        return 1.0
    try:
        ratio = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be off, max or a number from 0 to 1 (got {value!r})") from None
    if not 0.0 <= ratio <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1 (got {value})")
    return ratio


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
    load.add_argument("-c", "--context-length", type=_positive_int, metavar="N")
    load.add_argument("--gpu", type=gpu_ratio, metavar="off|max|0..1",
                      help="share of the layers to offload to the GPU")
    load.add_argument("--ttl", type=_positive_float, metavar="SECONDS",
                      help="unload after this many idle seconds")
    load.add_argument("--identifier", metavar="NAME", help="name to refer to this instance")
    load.add_argument("--estimate-only", action="store_true",
                      help="print the memory estimate without loading")
    load.add_argument("--json", action="store_true", help="print JSON (with --estimate-only)")

    unload = sub.add_parser("unload", help="unload a model")
    unload.add_argument("identifier", nargs="?")
    unload.add_argument("-a", "--all", action="store_true", help="unload every model")

    embed = sub.add_parser("embed", help="embed texts: dims, norms, first values, cosine "
                           "similarities")
    embed.add_argument("model", help="embedding model key or loaded identifier")
    embed.add_argument("texts", nargs="+", metavar="TEXT", help="texts to embed (quote them)")
    embed.add_argument("--dimensions", type=_positive_int, metavar="N",
                       help="keep the first N dimensions (Matryoshka), re-normalised")
    embed.add_argument("--truncate", action="store_true",
                       help="cut inputs longer than the model takes instead of failing")
    embed.add_argument("--json", action="store_true", help="print the vectors as JSON")

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
                 extra: dict[str, Callable] | None = None,
                 api_factory: Callable | None = None):
        self._manager_factory = manager_factory
        self._api_factory = api_factory  # the API `embed` goes through (default: in-process)
        self.console = console
        self.extra = extra or {}  # kernel-only commands (history, widgets)

    @property
    def manager(self):
        return self._manager_factory()

    def run(self, args: argparse.Namespace):
        command = args.command
        if command is None:
            raise CommandError("Give a command: ls, ps, load, unload, embed, history, widget, "
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
        models = [m for m in models if listing.model_type(m) in kinds]
        if args.json:
            self.console.json([listing.model_json(m) for m in models])
            return
        lines = listing.ls_lines(models, manager.list_loaded(), variants=args.variants,
                                 kinds=kinds)
        self.console.print("\n".join(lines))

    def cmd_ps(self, args) -> None:
        loaded = self.manager.list_loaded()
        if args.json:
            self.console.json([listing.loaded_json(m) for m in loaded])
            return
        self.console.print("\n".join(listing.ps_lines(loaded, self.console.load_hint)))

    # -- load / unload -----------------------------------------------------------------
    def _gpu_layers(self, ratio: float | None, variant) -> int | None:
        if ratio is None:
            return None
        if ratio >= 1.0:
            return -1
        layers = int(variant.arch_value("block_count", 0) or 0)
        return int(round(ratio * layers))

    def cmd_load(self, args) -> None:
        manager = self.manager
        info, variant = manager.resolve_model(args.model)
        if args.estimate_only:
            return self._estimate(manager, args, info, variant)
        if args.json:
            raise CommandError("--json goes with --estimate-only.", status=2)
        view = self.console.progress(f"Loading {info.key}")
        started = time.perf_counter()
        try:
            model = run_load(
                lambda: manager.load(args.model, identifier=args.identifier,
                                     context_length=args.context_length, ttl=args.ttl,
                                     n_gpu_layers=self._gpu_layers(args.gpu, variant)),
                view, discard=lambda m: manager.unload(m.identifier))
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

    def _estimate(self, manager, args, info, variant) -> None:
        estimate = getattr(manager, "estimate", None)
        if estimate is None:
            raise CommandError("Memory estimates are not available in this version of "
                               "lms-jupyter (ModelManager.estimate is missing).")
        result = estimate(args.model, context_length=args.context_length, gpu=args.gpu)
        if args.json:
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

    # -- embed ---------------------------------------------------------------------------
    def cmd_embed(self, args) -> None:
        """A quick look at embeddings; ``lms_jupyter.embed`` gives the arrays."""
        from .embeddings import EmbeddingUsageError, embed_with, summary_lines

        if self._api_factory is not None:
            api = self._api_factory()
        else:
            from ..api import OpenAICompatAPI

            api = OpenAICompatAPI(self.manager)
        try:
            vectors, meta = embed_with(api, args.texts, args.model,
                                       dimensions=args.dimensions, truncate=args.truncate)
        except EmbeddingUsageError as exc:
            raise CommandError(str(exc)) from None
        if args.json:
            self.console.json({**meta, "embeddings": vectors.tolist()})
            return
        self.console.print("\n".join(summary_lines(args.texts, vectors, meta)))
