"""ipywidgets front ends: a model manager and a chat box, usable without magics.

Loads and generations run on background threads, so the kernel keeps handling widget
messages (the Stop button works) and other cells can run meanwhile. The text of an
answer is shown through an Output widget whose single Markdown output is replaced, at
most ``rate`` times a second, rather than appended token by token.
"""

from __future__ import annotations

import html
import threading
import time

import ipywidgets as widgets

from lms_jupyter.cli import listing
from lms_jupyter.engine.options import LoadRequest
from lms_jupyter.errors import APIError
from lms_jupyter.kernel import runtime
from lms_jupyter.kernel.chat import ChatOptions, ChatRunner, Conversation, TurnResult
from lms_jupyter.kernel.progress.load import LoadTask
from lms_jupyter.kernel.tools import Toolbox
from lms_jupyter.models.catalog import DEFAULT_MODEL_KEY

_CELL = {"name": "15em", "params": "5em", "quant": "6em", "size": "7em", "state": "13em"}


def _label(text: str, width: str, bold: bool = False) -> widgets.HTML:
    body = f"<b>{html.escape(text)}</b>" if bold else html.escape(text)
    return widgets.HTML(body, layout=widgets.Layout(width=width, overflow="hidden"))


class _ModelRow:
    """One model: its facts, state, a Load/Unload button and a progress bar."""

    def __init__(self, owner: ModelManagerWidget, info):
        variant = info.default_variant
        self.owner = owner
        self.key = info.key
        self.state = widgets.HTML("not loaded", layout=widgets.Layout(width=_CELL["state"]))
        self.button = widgets.Button(
            description="Load", icon="play", layout=widgets.Layout(width="7em")
        )
        self.progress = widgets.FloatProgress(
            value=0.0, min=0.0, max=1.0, layout=widgets.Layout(width="10em", visibility="hidden")
        )
        self.button.on_click(lambda _button: self.owner._toggle(self.key))
        self.box = widgets.HBox(
            [
                _label(info.key, _CELL["name"], bold=True),
                _label(variant.params_string, _CELL["params"]),
                _label(variant.quantization, _CELL["quant"]),
                _label(listing.human_size(variant.size_bytes), _CELL["size"]),
                self.state,
                self.button,
                self.progress,
            ]
        )
        self.loading = False

    def show(self, instances: list) -> None:
        if self.loading:
            return
        if instances:
            names = ", ".join(m.identifier for m in instances)
            busy = [m.status for m in instances if m.status != "idle"]
            self.state.value = f"✓ loaded ({html.escape(names)})" + (
                f" · {busy[0]}" if busy else ""
            )
            self.button.description, self.button.icon = "Unload", "stop"
        else:
            self.state.value = "not loaded"
            self.button.description, self.button.icon = "Load", "play"
        self.button.disabled = False


class ModelManagerWidget(widgets.VBox):
    """Models on disk with their state; Load/Unload buttons with progress.

    Follows the manager's load/unload events, so loads done by ``%lms``, ``%%chat`` or
    the idle TTL show up here too.
    """

    def __init__(self, manager=None, **kwargs):
        self.manager = manager if manager is not None else runtime.get_manager()
        self.rows: dict[str, _ModelRow] = {}
        self.message = widgets.HTML("")
        refresh = widgets.Button(
            description="Refresh", icon="refresh", layout=widgets.Layout(width="8em")
        )
        refresh.on_click(lambda _button: self.refresh())
        header = widgets.HBox(
            [
                _label(title, _CELL[key], bold=True)
                for key, title in (
                    ("name", "MODEL"),
                    ("params", "PARAMS"),
                    ("quant", "QUANT"),
                    ("size", "SIZE"),
                    ("state", "STATE"),
                )
            ]
        )
        self.table = widgets.VBox([header])
        super().__init__([self.table, widgets.HBox([refresh, self.message])], **kwargs)
        self._tasks: dict[str, threading.Thread] = {}
        self._lock = threading.Lock()
        self._unsubscribe = self.manager.subscribe(self._on_event)
        self.refresh()

    def _on_event(self, event: str, snapshot: dict) -> None:
        self.refresh()

    def refresh(self) -> None:
        """Re-read the catalog and the loaded models."""
        # Ask the manager first, without our lock: its events arrive while it holds its own.
        models = self.manager.catalog.models()
        loaded = self.manager.list_loaded()
        with self._lock:
            rows = []
            for info in models:
                row = self.rows.get(info.key) or _ModelRow(self, info)
                self.rows[info.key] = row
                row.show([m for m in loaded if m.info.key == info.key])
                rows.append(row.box)
            self.table.children = [self.table.children[0], *rows]

    def _toggle(self, key: str) -> None:
        row = self.rows[key]
        if row.loading:
            return
        instances = [m for m in self.manager.list_loaded() if m.info.key == key]
        if instances:
            self.unload(key)
        else:
            self.load(key)

    def load(self, key: str) -> threading.Thread:
        """Load ``key`` on a background thread, driving the row's progress bar."""
        row = self.rows[key]
        row.loading = True
        row.button.disabled = True
        row.progress.value = 0.0
        row.progress.layout.visibility = "visible"
        row.state.value = "loading…"
        self.message.value = ""
        thread = threading.Thread(
            target=self._load, args=(row,), daemon=True, name=f"lms-widget-load-{key}"
        )
        self._tasks[key] = thread
        thread.start()
        return thread

    def _load(self, row: _ModelRow) -> None:
        request = LoadRequest(row.key)
        task = LoadTask(lambda progress: self.manager.load(request, progress=progress)).start()
        while not task.wait(0.1):
            row.progress.value = task.watcher.fraction
            row.state.value = (
                f"loading {int(task.watcher.fraction * 100)}% ({task.watcher.elapsed:.1f} s)"
            )
        row.progress.value = 1.0
        row.progress.layout.visibility = "hidden"
        row.loading = False
        if task.error is not None:
            message = task.error.message if isinstance(task.error, APIError) else str(task.error)
            self.message.value = html.escape(f"Could not load {row.key}: {message}")
        else:
            self.message.value = html.escape(f"Loaded {row.key} in {task.watcher.elapsed:.2f} s.")
        self.refresh()

    def unload(self, key: str) -> None:
        for model in [m for m in self.manager.list_loaded() if m.info.key == key]:
            try:
                self.manager.unload(model.identifier)
            except APIError as exc:
                self.message.value = html.escape(exc.message)
        self.refresh()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for running loads (scripts and tests)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in list(self._tasks.values()):
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            thread.join(remaining)
        return not any(t.is_alive() for t in self._tasks.values())

    def close(self) -> None:
        self._unsubscribe()
        super().close()

    def _repr_mimebundle_(self, **kwargs):
        """A readable text/plain for saved notebooks and static renderers."""
        bundle = super()._repr_mimebundle_(**kwargs) or {}
        loaded = self.manager.list_loaded()
        lines = listing.ls_lines(self.manager.catalog.models(), loaded)
        bundle["text/plain"] = "Model manager\n" + "\n".join(lines[2:] or lines)
        return bundle


def _markdown_output(text: str) -> dict:
    return {
        "output_type": "display_data",
        "data": {"text/markdown": text or " ", "text/plain": text},
        "metadata": {},
    }


class _WidgetView:
    """ChatView that streams into the chat widget's transcript."""

    def __init__(self, owner: ChatWidget, rate: float):
        self.owner = owner
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self.output: widgets.Output | None = None
        self._last = 0.0
        self.updates = 0

    def start_text(self, model: str) -> None:
        self.output = self.owner._add_message(model, "")
        self._last = 0.0

    def text(self, text: str) -> None:
        now = time.perf_counter()
        if now - self._last >= self.interval:
            self._last = now
            self.updates += 1
            assert self.output is not None  # start_text() came first
            self.output.outputs = (_markdown_output(text),)

    def end_text(self, text: str, stage: str) -> None:
        suffix = "\n\n*(stopped)*" if stage == "interrupted" else ""
        self.updates += 1
        assert self.output is not None  # start_text() came first
        self.output.outputs = (_markdown_output(text + suffix),)

    def tool_result(self, result) -> None:
        args = ", ".join(f"{k}={v!r}" for k, v in result.arguments.items())
        self.owner._add_note(f"🔧 {result.name}({args}) → {result.content[:300]}")

    def stats(self, stats) -> None:
        self.owner.status.value = html.escape(stats.line())


class ChatWidget(widgets.VBox):
    """A text box, Send / Stop / New chat buttons and a streaming transcript.

    ``send(text)`` works from code too; ``wait()`` blocks until the answer is complete.
    """

    def __init__(
        self,
        model: str | None = None,
        system: str | None = None,
        *,
        api=None,
        conversation: Conversation | None = None,
        tools=None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        request_defaults: dict | None = None,
        rate: float = 10.0,
        **kwargs,
    ):
        self.model = model or DEFAULT_MODEL_KEY
        self.conversation = (
            conversation if conversation is not None else Conversation(system=system)
        )
        self._api = api
        if tools is not None and not isinstance(tools, Toolbox):
            tools = Toolbox({fn.__name__: fn for fn in tools})
        self.tools = tools  # run on the widget's background thread
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.request_defaults = dict(request_defaults or {})
        self.rate = rate
        self.last_result: TurnResult | None = None
        self.last_error: str | None = None
        self.transcript = widgets.VBox(layout=widgets.Layout(max_height="30em", overflow="auto"))
        self.input = widgets.Textarea(
            placeholder="Message", layout=widgets.Layout(width="100%", height="5em")
        )
        self.send_button = widgets.Button(
            description="Send", icon="paper-plane", button_style="primary"
        )
        self.stop_button = widgets.Button(description="Stop", icon="stop", disabled=True)
        self.new_button = widgets.Button(description="New chat", icon="eraser")
        self.status = widgets.HTML("")
        self.send_button.on_click(lambda _b: self.send())
        self.stop_button.on_click(lambda _b: self.stop())
        self.new_button.on_click(lambda _b: self.new_chat())
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._runner: ChatRunner | None = None
        buttons = widgets.HBox([self.send_button, self.stop_button, self.new_button, self.status])
        super().__init__([self.transcript, self.input, buttons], **kwargs)

    @property
    def api(self):
        return self._api if self._api is not None else runtime.get_api()

    @property
    def busy(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # -- transcript ----------------------------------------------------------------------
    def _add_message(self, who: str, text: str) -> widgets.Output:
        output = widgets.Output()
        output.outputs = (_markdown_output(text),)
        header = widgets.HTML(f"<b>{html.escape(who)}</b>")
        self.transcript.children = [*self.transcript.children, header, output]
        return output

    def _add_note(self, text: str) -> None:
        note = widgets.HTML(f'<div style="opacity:.65;font-size:.85em">{html.escape(text)}</div>')
        self.transcript.children = [*self.transcript.children, note]

    # -- actions -------------------------------------------------------------------------
    def send(self, text: str | None = None) -> threading.Thread | None:
        """Send ``text`` (or the text box) and stream the answer on a background thread."""
        text = (self.input.value if text is None else text).strip()
        if not text or self.busy:
            return None
        self.input.value = ""
        self._add_message("You", text)
        self._stop.clear()
        self.stop_button.disabled = False
        self.send_button.disabled = True
        self.last_error = None
        self._thread = threading.Thread(
            target=self._run, args=(text,), daemon=True, name="lms-chat-widget"
        )
        self._thread.start()
        return self._thread

    def _run(self, text: str) -> None:
        options = ChatOptions(
            model=self.model,
            temperature=self.temperature,
            max_tokens=self.max_tokens,
            tools=self.tools,
            extra=dict(self.request_defaults),
        )
        try:
            manager = self.api.manager
            if manager.get_loaded(self.model) is None:
                self.status.value = html.escape(f"Loading {self.model}…")
                manager.acquire(self.model)
                self.status.value = ""
            self._runner = runner = ChatRunner(self.api, self.conversation)
            if self._stop.is_set():
                return
            self.last_result = runner.run(
                text, options, _WidgetView(self, self.rate), stop=self._stop
            )
        except APIError as exc:
            self.last_error = exc.message
            self.status.value = html.escape(f"Error: {exc.message}")
        except Exception as exc:  # noqa: BLE001 - show it rather than die silently
            self.last_error = f"{type(exc).__name__}: {exc}"
            self.status.value = html.escape(f"Error: {self.last_error}")
        finally:
            self.stop_button.disabled = True
            self.send_button.disabled = False

    def stop(self) -> None:
        """Stop the answer being generated; the partial text stays."""
        self._stop.set()
        runner = self._runner
        if runner is not None:
            runner.cancel()

    def new_chat(self) -> None:
        if self.busy:
            self.stop()
            self.wait(10)
        self.conversation.reset(self.conversation.system)
        self.transcript.children = []
        self.status.value = ""

    def _repr_mimebundle_(self, **kwargs):
        """The transcript as text/plain for saved notebooks and static renderers."""
        bundle = super()._repr_mimebundle_(**kwargs) or {}
        bundle["text/plain"] = f"Chat with {self.model}\n\n" + self.conversation.to_text()
        return bundle

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the current answer is complete; True if it is."""
        if self._thread is not None:
            self._thread.join(timeout)
        return not self.busy
