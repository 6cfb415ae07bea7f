"""``lms_jupyter.batch``: one prompt or schema mapped over a list, Series or DataFrame.

Each row is one chat turn run by the same :class:`~.chat.ChatRunner` as ``%%chat`` (typed
request through ``api.chat_request``, ``api.start_chat`` -> ``api.drive.Generation``, the
tool loop, schema parsing), so a batch row behaves exactly like a cell. Around it:

- **Concurrency**: up to the model's ``parallel`` slots + 1 rows are in flight (the extra
  one is queued so a slot never idles while the next prompt is rendered). The slot count
  is read from the loaded instance (``ps`` row ``parallel``); with one slot, requests
  queue FIFO on the model's worker and the batch runs at single-stream speed, and with
  more slots it gains the engine's batched throughput with no change here.
- **One API object**: every request goes through ``api`` (default: the kernel's in-process
  :func:`~.runtime.get_api`); ``%lms connect`` or a remote engine only swaps that object
  (see :func:`batch`, the line ``api = api if api is not None else get_api()``).
- **Resume**: finished rows are written to a SQLite cache (:mod:`.batch_cache`) as they
  finish; a rerun of the same call computes only what is missing.
- **Interrupt**: Ctrl+C / the kernel's stop button cancels every running request (within a
  token: ``channel.cancel()``) and returns what is done, instead of raising.
- **Errors stay in their row**: a context overflow, a failed request or an answer that
  does not match the schema after retries fills that row's ``error``.

The dispatcher runs on the calling (main) thread so the kernel's KeyboardInterrupt lands
there; each in-flight row runs on its own thread, blocking on its generation.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from dataclasses import dataclass, replace
from typing import Any

from lms_jupyter.errors import APIError
from lms_jupyter.kernel.chat import (
    DEFAULT_MAX_TOOL_ROUNDS,
    ChatOptions,
    ChatRunner,
    Conversation,
    NullView,
)
from lms_jupyter.kernel.mapping.data import (
    BatchInputError,
    Item,
    answer_columns,
    build_result,
    empty_row,
    read_inputs,
    row_values,
)
from lms_jupyter.kernel.progress.batch import Figures, make_progress
from lms_jupyter.kernel.schemas import OutputSchema, SchemaError, output_schema
from lms_jupyter.kernel.tools import Toolbox

DEFAULT_MAX_TOKENS = 256
SLOTS_REFRESH_SECONDS = 2.0


class _Stopped(Exception):
    """The batch was interrupted before this request started."""


class _CountingRunner(ChatRunner):
    """A ChatRunner that adds up the tokens of every request of a row (tool rounds and
    retries) and refuses to start once the batch is stopped."""

    def __init__(self, api, stopped: threading.Event):
        super().__init__(api)
        self.stopped = stopped
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.finish_reason: str | None = None

    def stream_once(self, body, view, stop=None):
        if self.stopped.is_set():
            raise _Stopped()
        reply = super().stream_once(body, view, stop)
        stats = reply.stats
        if stats is not None:
            self.prompt_tokens += stats.prompt_tokens or 0
            self.completion_tokens += stats.completion_tokens or 0
        self.finish_reason = reply.finish_reason
        return reply


@dataclass
class Outcome:
    """What one row ended with. ``row`` is None when it was interrupted."""

    row: dict | None
    cacheable: bool = False
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass
class BatchSpec:
    """Everything that decides a row's answer (and so its cache key)."""

    model: str
    system: str | None
    options: ChatOptions
    columns: list[str]
    retries: int
    base_seed: int | None
    identity: str  # the model as the cache knows it (key and file when resolvable)

    def request_body(self, prompt: str) -> dict:
        """The first request of a row, as the cache key sees it."""
        messages = ([{"role": "system", "content": self.system}] if self.system else []) + [
            {"role": "user", "content": prompt}
        ]
        options = self.options
        body: dict[str, Any] = {
            "messages": messages,
            **options.extra,
            "temperature": options.temperature,
            "max_tokens": options.max_tokens,
        }
        if options.schema is not None:
            body["response_format"] = options.schema.response_format()
        if options.tools:
            body["tools"] = options.tools.specs
            body["tool_choice"] = options.tool_choice
            body["max_tool_rounds"] = options.max_tool_rounds
        return body


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, APIError):
        return f"{exc.code}: {exc.message}" if exc.code else exc.message
    return f"{type(exc).__name__}: {exc}"


def run_row(api, spec: BatchSpec, item: Item, runner: _CountingRunner) -> Outcome:
    """One row: the chat turn (with tools), the schema parse, retries while sampling can
    change the answer. Never raises except for an interruption (``_Stopped``)."""
    options = spec.options
    error: BaseException | None = None
    attempts = spec.retries + 1
    for attempt in range(attempts):
        if attempt:
            seed = (spec.base_seed or 0) + attempt
            options = replace(spec.options, extra={**spec.options.extra, "seed": seed})
        runner.conversation = Conversation(system=spec.system)
        try:
            result = runner.run(item.prompt, options, NullView())
        except SchemaError as exc:  # the answer did not parse into the schema
            error = exc
            sampled = (options.temperature or 0) > 0
            if runner.finish_reason == "length" or not sampled:
                break  # a retry would give the same answer (greedy) or be cut off again
            continue
        except APIError as exc:
            return _failed(
                runner,
                exc,
                cacheable=400 <= exc.status < 500 and exc.status not in (408, 409, 429, 499),
            )
        except _Stopped:
            raise
        except Exception as exc:  # noqa: BLE001 - a row's failure never stops the batch
            return _failed(runner, exc, cacheable=False)
        if result.interrupted:
            return Outcome(
                None, prompt_tokens=runner.prompt_tokens, completion_tokens=runner.completion_tokens
            )
        parsed = result.parsed if options.schema is not None else result.content
        row = {
            **row_values(parsed, spec.columns),
            "finish_reason": runner.finish_reason,
            "prompt_tokens": runner.prompt_tokens,
            "completion_tokens": runner.completion_tokens,
            "error": None,
        }
        return Outcome(row, True, runner.prompt_tokens, runner.completion_tokens)
    assert error is not None  # every attempt ended in a SchemaError (there is at least one)
    return _failed(runner, error, cacheable=True)


def _failed(runner: _CountingRunner, exc: BaseException, cacheable: bool) -> Outcome:
    row = {
        "finish_reason": runner.finish_reason,
        "prompt_tokens": runner.prompt_tokens,
        "completion_tokens": runner.completion_tokens,
        "error": _error_text(exc),
    }
    return Outcome(row, cacheable, runner.prompt_tokens, runner.completion_tokens)


def model_slots(api, model: str) -> int:
    """The loaded instance's ``parallel`` slots (1 when unknown or not loaded yet)."""
    manager = getattr(api, "manager", None)
    try:
        instance = manager.get_loaded(model) if manager is not None else None
    except Exception:  # noqa: BLE001 - a remote manager that cannot answer: assume 1
        instance = None
    if instance is None:
        return 1
    value = instance.slots
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 1


def default_model(api) -> str:
    """The loaded chat model when there is exactly one; the starter model when none."""
    from lms_jupyter.models.catalog import DEFAULT_MODEL_KEY

    manager = getattr(api, "manager", None)
    if manager is None:
        return DEFAULT_MODEL_KEY
    loaded = [
        m.identifier
        for m in manager.list_loaded()
        if not getattr(m, "embedding_only", False)
        and getattr(getattr(m, "info", None), "type", "llm") != "embeddings"
    ]
    if len(loaded) > 1:
        raise BatchInputError(
            f"Several models are loaded ({', '.join(loaded)}); pick one with model=..."
        )
    return loaded[0] if loaded else DEFAULT_MODEL_KEY


def model_identity(api, model: str) -> str:
    """The model as the cache keys it: its catalog key and file where known, so a rerun
    with another alias of the same model hits the cache and a new file does not."""
    manager = getattr(api, "manager", None)
    try:
        instance = manager.get_loaded(model) if manager is not None else None
        if instance is not None:
            return f"{instance.info.key}|{instance.variant.path.name}"
        if manager is None:  # (an AttributeError here was caught below, to the same end)
            return model
        info, variant = manager.catalog.resolve(model)
        return f"{info.key}|{variant.path.name}"
    except Exception:  # noqa: BLE001 - a name we cannot resolve is its own identity
        return model


class BatchRun:
    """The dispatcher: keeps the slots full, records rows, handles the interrupt."""

    def __init__(
        self,
        api,
        spec: BatchSpec,
        items: list[Item],
        rows: list[dict],
        keys: list[str],
        cache,
        figures: Figures,
        view,
        concurrency: int | None = None,
    ):
        self.api, self.spec, self.items, self.rows = api, spec, items, rows
        self.keys, self.cache, self.figures, self.view = keys, cache, figures, view
        self.concurrency = concurrency
        self.stopped = threading.Event()
        self.inbox: queue.SimpleQueue = queue.SimpleQueue()
        self.threads: dict[int, tuple[threading.Thread, _CountingRunner]] = {}
        self.interrupted = False
        self.cache_error: str | None = None
        self._limit, self._limit_at = 1, -1e9
        self._handling: tuple[int, Outcome] | None = None
        self.twins: dict[int, list[int]] = {}  # position -> later rows with its request

    def limit(self) -> int:
        if self.concurrency:
            return self.concurrency
        now = time.monotonic()
        if now - self._limit_at >= SLOTS_REFRESH_SECONDS:
            self._limit = model_slots(self.api, self.spec.model) + 1
            self._limit_at = now
        return self._limit

    def _work(self, item: Item, runner: _CountingRunner) -> None:
        try:
            outcome = run_row(self.api, self.spec, item, runner)
        except _Stopped:
            outcome = Outcome(None)
        except BaseException as exc:  # noqa: BLE001 - reported in the row, never lost
            outcome = _failed(runner, exc, cacheable=False)
        self.inbox.put((item.position, outcome))

    def _start(self, item: Item) -> None:
        runner = _CountingRunner(self.api, self.stopped)
        thread = threading.Thread(
            target=self._work, args=(item, runner), daemon=True, name=f"lms-batch-{item.position}"
        )
        self.threads[item.position] = (thread, runner)
        thread.start()

    def _record(self, position: int, outcome: Outcome) -> None:
        """Keep a finished row: in the result, then in the cache, then in the figures.
        ``_handling`` marks the step an interrupt may cut short, so ``_stop`` redoes it
        (the row update and the cache write are idempotent)."""
        self._handling = (position, outcome)
        self.threads.pop(position, None)
        if outcome.row is None:
            self.rows[position]["finish_reason"] = "interrupted"
        else:
            self.rows[position].update(outcome.row)
            if outcome.cacheable and self.cache is not None:
                try:
                    self.cache.put(self.keys[position], outcome.row)
                except Exception as exc:  # noqa: BLE001 - a full disk must not stop the batch
                    self.cache_error = f"{type(exc).__name__}: {exc}"
        self._handling = None
        figures = self.figures
        figures.prompt_tokens += outcome.prompt_tokens
        figures.completion_tokens += outcome.completion_tokens
        if outcome.row is not None:
            figures.done += 1
            figures.computed += 1
            figures.errors += outcome.row.get("error") is not None
            for twin in self.twins.pop(position, ()):
                self.rows[twin].update(outcome.row)
                figures.done += 1
                figures.cached += 1
                figures.errors += outcome.row.get("error") is not None

    def run(self, pending: list[Item]) -> None:
        todo = deque(pending)
        started = time.perf_counter()
        try:
            while todo or self.threads:
                while todo and len(self.threads) < self.limit():
                    self._start(todo.popleft())
                try:
                    position, outcome = self.inbox.get(timeout=0.2)
                except queue.Empty:
                    pass
                else:
                    self._record(position, outcome)
                self.figures.elapsed = time.perf_counter() - started
                self.view.update(self.figures)
        except KeyboardInterrupt:
            self.interrupted = True
            self._stop()
        self.figures.elapsed = time.perf_counter() - started

    def _stop(self) -> None:
        """Cancel every running request and keep whatever finished meanwhile."""
        self.stopped.set()
        if self._handling is not None:  # interrupted while recording: finish that first
            self._record(*self._handling)
        for _thread, runner in list(self.threads.values()):
            runner.cancel()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and (
            any(t.is_alive() for t, _r in self.threads.values()) or not self.inbox.empty()
        ):
            try:
                position, outcome = self.inbox.get(timeout=0.1)
            except queue.Empty:
                continue
            except KeyboardInterrupt:  # a second Ctrl+C: keep draining, it is quick
                continue
            self._record(position, outcome)


def _toolbox(tools) -> Toolbox | None:
    if tools is None or isinstance(tools, Toolbox):
        return tools
    if isinstance(tools, dict):
        return Toolbox(tools)
    if callable(tools):
        tools = [tools]
    return Toolbox({getattr(fn, "__name__", f"tool_{i}"): fn for i, fn in enumerate(tools)})


def _open_cache(cache):
    """The cache to use: None when off; the default one only if it can be opened (a
    read-only data dir must not stop a batch), a named one or an error."""
    if cache is False or cache is None:
        return None
    import sqlite3

    from lms_jupyter.kernel.mapping.cache import BatchCache

    if cache is not True:
        return BatchCache(cache)
    try:
        return BatchCache()
    except (OSError, sqlite3.Error) as exc:
        print(f"lms_jupyter.batch: no resume cache ({exc}); finished rows are not kept.")
        return None


def batch(
    inputs,
    prompt: str | None = None,
    *,
    model: str | None = None,
    system: str | None = None,
    schema=None,
    max_tokens: int | None = DEFAULT_MAX_TOKENS,
    temperature: float | None = 0.0,
    seed: int | None = None,
    tools=None,
    tool_choice: str | dict | None = None,
    max_tool_rounds: int = DEFAULT_MAX_TOOL_ROUNDS,
    retries: int = 2,
    concurrency: int | None = None,
    cache=True,
    refresh: bool | str = False,
    progress=True,
    api=None,
    **request_fields,
):
    """Run one chat turn per row of ``inputs``; a DataFrame (or list of dicts) of answers.

    ``inputs``: a list, a pandas Series or a DataFrame. ``prompt``: a template, with
    ``{column}`` fields for a DataFrame, ``{input}`` (or the Series' name) for a list or
    Series, ``{index}`` always; without it each value is the prompt. ``schema``: a pydantic
    model or JSON schema; answers are grammar-constrained, parsed, and spread over one
    column per field (else one ``answer`` column). Every result has ``finish_reason``,
    ``prompt_tokens``, ``completion_tokens`` and ``error`` and keeps the input's index;
    ``DataFrame.attrs["lms_batch"]`` (``.report`` on a list) holds items/s and tokens/s.

    ``model``: default the one loaded chat model, else the starter model (JIT-loaded).
    ``tools``: functions (a list, a dict name -> function, or a Toolbox) the model may call;
    they run on the batch's worker threads; ``tool_choice`` (first request of a row) and
    ``max_tool_rounds`` as in ``%%chat``. ``retries``: extra attempts for an answer that
    does not match the schema, each with the next seed (only when sampling, temperature >
    0, and not when ``max_tokens`` cut it). ``concurrency``: requests in flight (default:
    the model's parallel slots + 1). ``cache``: True (Jupyter's data dir), False, or a
    path; ``refresh=True`` recomputes cached rows, ``refresh="errors"`` only the cached
    rows that have an error. Identical rows are computed once. ``progress``: True, False,
    "widget" or "terminal". ``api``: what runs the requests (default: the kernel's). Other keyword
    arguments are request fields (``top_k``, ``stop``, ...).

    Ctrl+C stops within a token per running request and returns what is done (unfinished
    rows have no answer; ``finish_reason`` "interrupted" for those that were running);
    running the same call again resumes from the cache.
    """
    from lms_jupyter.kernel.runtime import get_api

    # every request goes through this one API object: the in-kernel one today;
    # ``%lms connect`` (a server's slots) or remote engines replace it here
    api = api if api is not None else get_api()
    items, index = read_inputs(inputs, prompt)
    checked_schema: OutputSchema | None = None if schema is None else output_schema(schema)
    columns = answer_columns(checked_schema)
    model = model or default_model(api)
    extra = dict(request_fields)
    if seed is not None:
        extra["seed"] = seed
    options = ChatOptions(
        model=model,
        temperature=temperature,
        max_tokens=max_tokens,
        schema=checked_schema,
        tools=_toolbox(tools),
        tool_choice=tool_choice,
        max_tool_rounds=max_tool_rounds,
        extra=extra,
    )
    spec = BatchSpec(
        model, system, options, columns, max(0, int(retries)), seed, model_identity(api, model)
    )
    from lms_jupyter.kernel.mapping.cache import cache_key

    keys = [cache_key(spec.identity, spec.request_body(item.prompt)) for item in items]
    store = _open_cache(cache)
    try:
        return _run(api, spec, items, index, keys, store, refresh, progress, concurrency)
    finally:
        if store is not None:
            store.close()


def _run(
    api,
    spec: BatchSpec,
    items: list[Item],
    index,
    keys: list[str],
    store,
    refresh: bool | str,
    progress,
    concurrency: int | None,
):
    if refresh not in (True, False, "errors"):
        raise BatchInputError("refresh must be True, False or 'errors'.")
    rows = [empty_row(spec.columns) for _ in items]
    cached = {} if store is None or refresh is True else store.get_many(keys)
    if refresh == "errors":
        cached = {k: row for k, row in cached.items() if row.get("error") is None}
    pending: list = []
    twins: dict[int, list[int]] = {}
    first: dict[str, int] = {}
    figures = Figures(total=len(items))
    for item, key in zip(items, keys, strict=False):
        if key in cached:
            rows[item.position].update(cached[key])
            figures.done += 1
            figures.cached += 1
            figures.errors += cached[key].get("error") is not None
        elif key in first:  # the same request as an earlier row: answered with it
            twins.setdefault(first[key], []).append(item.position)
        else:
            first[key] = item.position
            pending.append(item)
    view = make_progress(progress, f"batch · {spec.model}", figures)
    run = BatchRun(api, spec, items, rows, keys, store, figures, view, concurrency)
    run.twins = twins
    try:
        run.run(pending)
    finally:
        view.close(figures, run.interrupted)
    report = _report(spec, figures, run, store)
    print(summary_line(report), flush=True)
    return build_result(rows, spec.columns, index, report)


def _report(spec: BatchSpec, figures: Figures, run: BatchRun, store) -> dict:
    return {
        "model": spec.model,
        "total": figures.total,
        "done": figures.done,
        "computed": figures.computed,
        "cached": figures.cached,
        "errors": figures.errors,
        "interrupted": run.interrupted,
        "pending": figures.total - figures.done,
        "elapsed_s": round(figures.elapsed, 3),
        "items_per_second": round(figures.items_per_second, 3),
        "tokens_per_second": round(figures.tokens_per_second, 2),
        "prompt_tokens": figures.prompt_tokens,
        "completion_tokens": figures.completion_tokens,
        "concurrency": run.concurrency or run._limit,
        "cache": str(store.path) if store is not None else None,
        "cache_error": run.cache_error,
    }


def summary_line(report: dict) -> str:
    head = (
        f"Interrupted: {report['done']}/{report['total']} rows done"
        if report["interrupted"]
        else f"{report['done']}/{report['total']} rows"
    )
    parts = [
        head,
        f"{report['computed']} computed in {report['elapsed_s']:.1f} s",
        f"{report['items_per_second']:.2f} items/s",
        f"{report['tokens_per_second']:.1f} tokens/s",
    ]
    if report["cached"]:
        parts.append(f"{report['cached']} from cache")
    parts.append(f"{report['errors']} error{'s' if report['errors'] != 1 else ''}")
    line = " · ".join(parts)
    if report["interrupted"]:
        line += " (run the same call again to resume)"
    if report.get("cache_error"):
        line += f" [cache not written: {report['cache_error']}]"
    return line


__all__ = ["batch", "BatchInputError", "summary_line", "model_slots"]
