"""``%lms`` and ``%%chat``: LM Studio's CLI and a streaming chat in any IPython.

Load with ``%load_ext lms_jupyter``. Both magics drive the kernel's one ModelManager
(:mod:`.runtime`); no server is needed. User mistakes are reported as a one-line
UsageError; interrupting a ``%%chat`` keeps the partial answer.
"""

from __future__ import annotations

import json
import shlex
import time

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from traitlets import Bool, Dict, Enum, Float, Int, Unicode

from lms_jupyter.cli.commands import Commands, Console
from lms_jupyter.cli.parser import CommandError, HelpShown, _Parser, _positive_int, build_parser
from lms_jupyter.errors import APIError
from lms_jupyter.kernel import runtime
from lms_jupyter.kernel.chat import (
    DEFAULT_MAX_TOOL_ROUNDS,
    ChatOptions,
    ChatRunner,
    Conversation,
    GenerationInterrupted,
)
from lms_jupyter.kernel.context.interpolate import Expanded
from lms_jupyter.kernel.context.ipython import KernelContext, show_prompt
from lms_jupyter.kernel.context.kernel_assist import AssistError, run_explain, run_fix
from lms_jupyter.kernel.context.options import add_assist_parsers, add_chat_arguments
from lms_jupyter.kernel.context.render import DEFAULT_CONTEXT_TOKENS
from lms_jupyter.kernel.display import CellChatView, can_update_displays
from lms_jupyter.kernel.progress.load import (
    LoadCancelled,
    NotebookLoadProgress,
    TerminalLoadProgress,
    run_load,
)
from lms_jupyter.kernel.schemas import SchemaError, schema_from_namespace
from lms_jupyter.kernel.tools import Toolbox, ToolError
from lms_jupyter.models.catalog import DEFAULT_MODEL_KEY


def build_chat_parser() -> _Parser:
    parser = _Parser(
        prog="%%chat",
        description="Chat with a local model; the cell body is "
        "the message ({name}, {expr}, {In[n]}, {Out[n]}, {Err[n]}, {Err} insert "
        "the notebook's values; \\{ is a literal brace).",
    )
    parser.add_argument("--model", "-m", metavar="M", help="model key or loaded identifier")
    parser.add_argument("--system", "-s", metavar="TEXT", help="system prompt")
    parser.add_argument("--temperature", "-t", type=float, metavar="T")
    parser.add_argument("--max-tokens", type=_positive_int, metavar="N")
    parser.add_argument("--seed", type=int, metavar="N")
    parser.add_argument("--new", action="store_true", help="start a new conversation")
    parser.add_argument(
        "--schema", metavar="NAME", help="pydantic model or JSON schema dict the answer must follow"
    )
    parser.add_argument("--out", metavar="VAR", help="store the result in this variable")
    parser.add_argument("--tools", metavar="F,G", help="kernel functions the model may call")
    parser.add_argument(
        "--tool-choice",
        choices=["auto", "required", "none"],
        help="for the first request (later ones use auto)",
    )
    parser.add_argument("--no-stats", action="store_true", help="hide the stats line")
    add_chat_arguments(parser)  # --no-context, --context-tokens, --show-prompt
    return parser


def _json_fence(text: str) -> str:
    """A structured answer as a JSON block: indented once it parses (the model's own
    spacing while it streams)."""
    try:
        text = json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except ValueError:
        pass
    return f"```json\n{text}\n```"


class KernelConsole(Console):
    """Command output in a cell: text to stdout, loads as an updating progress bar."""

    load_hint = "%lms load <model>"
    notes_on_stdout = True

    def __init__(self, mode: str):
        self.mode = mode

    def progress(self, title: str):
        return (
            NotebookLoadProgress(title) if self.mode == "display" else TerminalLoadProgress(title)
        )

    # -- get / log stream: the cell shows status lines; the magic itself is the "yes" --------
    def note(self, text: str) -> None:
        print(text, flush=True)

    def confirm(self, question: str) -> bool:
        return True

    def download_progress(self, title: str):
        from lms_jupyter.kernel.progress.download import (
            TerminalDownloadProgress,
            WidgetDownloadProgress,
        )

        if self.mode == "display":
            return WidgetDownloadProgress(title)
        return TerminalDownloadProgress(title)

    def select(self, plan, resolve_repo):
        """A picker widget in a notebook (it downloads on its own); a prompt elsewhere."""
        from lms_jupyter.kernel.progress.download import DownloadPicker

        if self.mode == "display":
            return DownloadPicker(plan, resolve_repo, self.load_hint)
        return super().select(plan, resolve_repo)


@magics_class
class LMSMagics(Magics):
    """The ``%lms`` line magic and the ``%%chat`` cell magic."""

    default_model = Unicode(DEFAULT_MODEL_KEY, help="Model for %%chat when none was given.").tag(
        config=True
    )
    show_stats = Bool(True, help="Show the stats line under answers.").tag(config=True)
    update_rate = Float(15.0, help="Display updates per second while streaming.").tag(config=True)
    stream_mode = Enum(
        ["auto", "display", "print"],
        default_value="auto",
        help="display: update the output in place; print: print deltas "
        "(terminal); auto: pick from the frontend.",
    ).tag(config=True)
    max_tool_rounds = Int(
        DEFAULT_MAX_TOOL_ROUNDS,
        help="Tool-call rounds per %%chat cell before the model must answer.",
    ).tag(config=True)
    context_tokens = Int(
        DEFAULT_CONTEXT_TOKENS, help="Token cap for each value a %%chat cell fills in."
    ).tag(config=True)
    chat_defaults = Dict(
        help="Extra request fields for every %%chat (e.g. top_k, logit_bias)."
    ).tag(config=True)

    def __init__(self, shell=None, **kwargs):
        super().__init__(shell=shell, **kwargs)
        self.conversation = Conversation()
        self.last_result = None
        self._lms_parser = build_parser("%lms")
        add_assist_parsers(self._lms_parser)  # %lms fix, %lms explain
        self._chat_parser = build_chat_parser()
        self.context = KernelContext(shell)  # {In[n]}, {Err}, %lms fix / explain

    @property
    def mode(self) -> str:
        if self.stream_mode != "auto":
            return self.stream_mode
        return "display" if can_update_displays(self.shell) else "print"

    # -- %lms ------------------------------------------------------------------------------
    @line_magic
    def lms(self, line: str = ""):
        """LM Studio's lms commands: ls, ps, load, unload, get, log stream, embed, history,
        widget, chat-widget."""
        try:
            argv = shlex.split(line)
        except ValueError as exc:
            raise UsageError(f"%lms: {exc}") from None
        try:
            args = self._lms_parser.parse_args(argv)
            if args.command is None:
                self._lms_parser.print_help()
                return None
            commands = Commands(
                runtime.get_manager,
                KernelConsole(self.mode),
                extra={
                    "history": self._history,
                    "widget": self._widget,
                    "chat-widget": self._chat_widget,
                    "connect": self._connect,
                    "disconnect": self._disconnect,
                    "fix": lambda a: run_fix(self, a),
                    "explain": lambda a: run_explain(self, a),
                },
                api_factory=runtime.get_api,
                parser=self._lms_parser,
            )
            return commands.run(args)
        except HelpShown:
            return None
        except CommandError as exc:
            raise UsageError(exc.message) from None
        except AssistError as exc:
            raise UsageError(str(exc)) from None

    def _connect(self, args) -> None:
        """``%lms connect [URL] [--token T]``: use a server's models from now on."""
        from lms_jupyter.client.discovery import DiscoveryError

        try:
            connection = runtime.connect(args.url, args.token)
            loaded = connection.list_loaded()
        except (DiscoveryError, APIError) as exc:
            raise CommandError(str(getattr(exc, "message", exc))) from None
        names = ", ".join(m.identifier for m in loaded) or "none"
        print(f"{connection.describe()} Loaded there: {names}.")

    def _disconnect(self, args) -> None:
        if runtime.disconnect():
            print("Disconnected; using this kernel's own models.")
        else:
            print("Not connected; using this kernel's own models.")

    def _history(self, args) -> None:
        if args.clear:
            self.conversation.reset()
            print("Conversation cleared.")
            return
        if args.json:
            Console().json(self.conversation.entries())
            return
        if self.mode == "display":
            from IPython.display import display

            display(
                {
                    "text/markdown": self.conversation.to_markdown(),
                    "text/plain": self.conversation.to_text(),
                },
                raw=True,
            )
        else:
            print(self.conversation.to_text())

    def _widget(self, args):
        from lms_jupyter.kernel.widgets import ModelManagerWidget

        return ModelManagerWidget()

    def _chat_widget(self, args):
        from lms_jupyter.kernel.widgets import ChatWidget

        return ChatWidget(
            model=args.model or self.default_model,
            system=args.system,
            request_defaults=dict(self.chat_defaults),
        )

    # -- %%chat ----------------------------------------------------------------------------
    @cell_magic
    def chat(self, line: str, cell: str):
        """Stream a model's answer to the cell's message; the conversation continues."""
        try:
            args = self._chat_parser.parse_args(shlex.split(line))
        except HelpShown:
            return None
        except CommandError as exc:
            raise UsageError(exc.message) from None
        except ValueError as exc:
            raise UsageError(f"%%chat: {exc}") from None
        assert self.shell is not None  # a magic runs in its shell
        namespace = self.shell.user_ns
        text = (cell or "").strip()
        if not text:
            raise UsageError("%%chat: write the message in the cell body.")
        # placeholders are evaluated now: a bad one fails before any model work
        resolved = None if args.no_context else self.context.resolve(text)
        if args.out is not None and not args.out.isidentifier():
            raise UsageError(f"%%chat: --out needs a variable name (got {args.out!r}).")
        try:
            schema = schema_from_namespace(args.schema, namespace) if args.schema else None
            names = [n.strip() for n in (args.tools or "").split(",") if n.strip()]
            tools = Toolbox.from_names(names, namespace) if names else None
        except (SchemaError, ToolError) as exc:
            raise UsageError(f"%%chat: {exc}") from None
        if args.new:
            self.conversation.reset()
        if args.system is not None:
            self.conversation.system = args.system or None
        model = args.model or self._continuing_model() or self.default_model
        extra = dict(self.chat_defaults)
        if args.seed is not None:
            extra["seed"] = args.seed
        options = ChatOptions(
            model=model,
            temperature=args.temperature,
            max_tokens=args.max_tokens,
            schema=schema,
            tools=tools,
            tool_choice=args.tool_choice,
            max_tool_rounds=self.max_tool_rounds,
            extra=extra,
        )
        mode = self.mode
        self._ensure_loaded(model, mode)
        # rendered now, with the loaded model's tokenizer measuring the cap
        expanded = (
            Expanded(text)
            if resolved is None
            else resolved.render(
                self.context.limits(model, args.context_tokens or self.context_tokens)
            )
        )
        prompt = expanded.text.strip()
        if not prompt:
            raise UsageError("%%chat: the message is empty once its placeholders are filled.")
        if args.show_prompt:
            show_prompt(expanded, model, self.conversation.system)
        view = CellChatView(
            mode=mode,
            rate=self.update_rate,
            show_stats=self.show_stats and not args.no_stats,
            render=_json_fence if schema else None,
        )
        runner = ChatRunner(runtime.get_api(), self.conversation)
        try:
            result = runner.run(prompt, options, view)
        except APIError as exc:
            raise UsageError(exc.message) from None
        except SchemaError as exc:
            raise UsageError(str(exc)) from None
        self._remember_model(model)
        self.last_result = result
        if result.interrupted:
            raise GenerationInterrupted(result.stats.completion_tokens if result.stats else 0)
        if schema is not None:
            namespace["_"] = result.parsed
            if args.out:
                namespace[args.out] = result.parsed
        elif args.out:
            namespace[args.out] = result.content
        return None

    def _continuing_model(self) -> str | None:
        """The model the conversation used last, or its key once that instance is gone."""
        conversation = self.conversation
        if not conversation.model:
            return None
        manager = runtime.get_manager()
        if manager.get_loaded(conversation.model) is not None:
            return conversation.model
        try:
            manager.catalog.resolve(conversation.model)
            return conversation.model
        except LookupError:
            return getattr(conversation, "model_key", None)

    def _remember_model(self, model: str) -> None:
        self.conversation.model = model
        loaded = runtime.get_manager().get_loaded(model)
        self.conversation.model_key = loaded.info.key if loaded is not None else None

    def _ensure_loaded(self, model: str, mode: str) -> None:
        """JIT-load the model here, with progress, rather than silently inside the request."""
        manager = runtime.get_manager()
        if manager.get_loaded(model) is not None or not manager.jit_loading:
            return
        try:
            info, _ = manager.resolve_model(model)
        except APIError as exc:
            raise UsageError(exc.message) from None
        title = f"Loading {info.key}"
        view = NotebookLoadProgress(title) if mode == "display" else TerminalLoadProgress(title)
        started = time.perf_counter()
        try:
            run_load(
                lambda progress: manager.acquire(model, progress=progress),
                view,
                discard=lambda m: manager.unload(m.identifier),
            )
        except LoadCancelled:
            raise UsageError("Load cancelled.") from None
        except APIError as exc:
            raise UsageError(exc.message) from None
        view.finish(f"Loaded {info.key} in {time.perf_counter() - started:.2f} s.")


def load_ipython_extension(ipython) -> None:
    if getattr(ipython, "_lms_magics", None) is not None:
        return
    magics = LMSMagics(shell=ipython)
    ipython.register_magics(magics)
    magics.context.register()  # records each failing cell's traceback for {Err}
    ipython._lms_magics = magics


def unload_ipython_extension(ipython) -> None:
    magics = getattr(ipython, "_lms_magics", None)
    if magics is None:
        return
    magics.context.unregister()
    registry = ipython.magics_manager.magics
    registry["line"].pop("lms", None)
    registry["cell"].pop("chat", None)
    if magics in getattr(ipython, "configurables", []):
        ipython.configurables.remove(magics)
    ipython._lms_magics = None
