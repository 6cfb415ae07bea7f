"""A model's worker process: ``python -m lms_jupyter.engine.worker.child FD [GGUF]``.

It owns everything that touches llama.cpp for one instance (a
:class:`~..model.LoadedModel`: the Llama, the scheduler and its slots, the prompt cache,
the embedding context, draft models) and serves its parent over the socket ``FD``
(:mod:`.protocol`). Threads: the main thread loads the model and then reports status
changes; a reader thread takes the parent's messages; the model's scheduler thread
generates and sends events as they are produced.

The process ignores SIGINT: a kernel interrupt or a Ctrl+C in a terminal reaches the whole
process group, and it is meant for the parent, which cancels the request instead. It exits
as soon as the socket closes, so a parent that dies (even by SIGKILL) leaves no worker.
A worker started ahead of need (a spare) waits for its "load" message the same way, after
loading the vocabulary of GGUF (the model loaded last) to warm llama.cpp's loader.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
import time

from lms_jupyter.engine.local.llama import GGML_LOG_WARN  # no llama_cpp import: see llama.py
from lms_jupyter.engine.worker.coalesce import Coalescer

# Status changes ride on the messages a step sends (Worker.grouped); this poll only
# catches what happens outside steps (an embedding job, the last request leaving). It used
# to be the only report, every 20 ms: 50 wake-ups a second beside llama.cpp's threads cost
# a stream ~3% of its decode speed on two cores.
STATUS_POLL_SECONDS = 0.25


class _Channel:
    """The scheduler's view of one request: events go over the socket as they come."""

    loop = None

    def __init__(self, worker: Worker, rid: int):
        self.worker, self.rid = worker, rid
        self.cancel_event = threading.Event()
        self.cancelled_by_client = False
        self.closed = False

    @property
    def cancelled(self) -> bool:
        return self.cancel_event.is_set()

    def put(self, event) -> None:
        self.worker.deliver(("event", self.rid, event))

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.worker.channels.pop(self.rid, None)
            self.worker.deliver(("closed", self.rid))

    def cancel(self) -> None:
        self.cancelled_by_client = True
        self.cancel_event.set()


class Worker:
    def __init__(self, connection):
        self.connection = connection
        self._send_lock = threading.Lock()
        self.model = None
        self.channels: dict[int, _Channel] = {}
        self._load_cancelled = threading.Event()
        self._close = threading.Event()
        self._cancel_running = True
        self._group: list | None = None  # messages held while a step samples (grouped)
        self._group_thread = 0
        self._status_lock = threading.Lock()
        self._sent_status: str | None = None
        self._progress_sent = (-1.0, 0.0)  # (fraction, time) of the last progress message
        self.coalescer = Coalescer()  # the stream interval arrives with the "load" message

    def send(self, message) -> None:
        try:
            with self._send_lock:
                self.connection.send(message)
        except (OSError, ValueError):  # the parent is gone: nobody to work for
            os._exit(0)

    def send_with_status(self, messages: list, step: bool = False) -> None:
        """Send ``messages`` (in one write), after what the stream interval held
        (:mod:`.coalesce`; ``step``: a decode step's or a tick's, which may be held in
        turn), led by a ("status", s) message when the model's status differs from the last
        one sent. Deciding and sending under one lock keeps the parent's view in order."""
        with self._status_lock:
            now = time.monotonic()
            if step:
                out = self.coalescer.step(messages, now)
                if out is None:
                    return
            else:
                out = self.coalescer.release(messages, now)
            model = self.model
            status = model.status if model is not None else None
            if status is not None and status != self._sent_status:
                self._sent_status = status
                out = [("status", status), *out]
            if len(out) == 1:
                self.send(out[0])
            elif out:
                self.send(("batch", out))

    def deliver(self, message) -> None:
        """A request's event or end: held while the scheduler thread samples one step
        (:meth:`grouped`), else sent at once (with a status change, if there is one)."""
        group = self._group
        if group is not None and threading.get_ident() == self._group_thread:
            group.append(message)
        else:
            self.send_with_status([message])

    @contextlib.contextmanager
    def grouped(self):
        """The scheduler's sampling of one step: the tokens of every slot go to the parent
        in one message (one write and one wake-up of its reader instead of one per slot),
        with the model's status when this step changed it."""
        self._group_thread, self._group = threading.get_ident(), []
        try:
            yield
        finally:
            group, self._group = self._group, None
            self.send_with_status(group, step=True)

    # -- the main thread --------------------------------------------------------------------
    def run(self) -> None:
        try:
            kind, spec = self.connection.recv()
        except (EOFError, OSError):
            os._exit(0)  # a spare whose parent stopped before it was needed
        if kind != "load":
            os._exit(2)
        from lms_jupyter.engine.local.llama import LoadCancelled
        from lms_jupyter.engine.local.model import LoadedModel
        from lms_jupyter.engine.worker.protocol import LoadedFacts
        from lms_jupyter.errors import APIError

        self.coalescer = Coalescer(spec.stream_interval)
        threading.Thread(target=self._read, name="lms-worker-reader", daemon=True).start()
        model = LoadedModel(spec.info, spec.variant, spec.identifier, spec.config)
        try:
            model.load(progress=self._progress)
        except LoadCancelled:
            LLAMA_LINES.flush()
            self.send(("load_failed", None))
            os._exit(0)
        except Exception as exc:  # noqa: BLE001 - every load failure goes to the parent
            logging.getLogger(__name__).error("loading %s failed: %s", spec.variant.path, exc)
            error = exc if isinstance(exc, APIError) else APIError(str(exc), 500)
            self.send(("load_failed", error))
            os._exit(0)
        self.model = model
        if model.scheduler is not None:
            model.scheduler.grouped_events = self.grouped
        self.send(
            (
                "loaded",
                LoadedFacts(
                    model.load_time_seconds,
                    model.config.n_threads,
                    "" if model.embedding_only else model.bos_text,
                    "" if model.embedding_only else model.eos_text,
                    os.getpid(),
                ),
            )
        )
        LLAMA_LINES.flush()  # after "loaded": the parent reads them off the critical path
        while not self._close.wait(STATUS_POLL_SECONDS):
            self.send_with_status([], step=True)  # also releases text a stalled step held
            LLAMA_LINES.flush()
        model.close(wait=False, cancel_running=self._cancel_running)
        model.join(timeout=None if not self._cancel_running else 60)
        LLAMA_LINES.flush()
        self.send(("bye",))
        os._exit(0)

    def _progress(self, fraction: float) -> bool:
        """llama.cpp calls this per tensor (274 times for SmolLM2); the parent hears of a
        step of 1% at most every 20 ms, and of the end. A cancel is seen on every call."""
        now = time.monotonic()
        last_fraction, last_time = self._progress_sent
        done = fraction >= 1.0 > last_fraction
        if done or (fraction - last_fraction >= 0.01 and now - last_time >= 0.02):
            self._progress_sent = (fraction, now)
            self.send(("progress", fraction))
        return not self._load_cancelled.is_set()

    # -- the reader thread --------------------------------------------------------------------
    def _read(self) -> None:
        while True:
            try:
                message = self.connection.recv()
            except (EOFError, OSError):
                os._exit(0)
            try:
                self._handle(message)
            except Exception:
                logging.getLogger(__name__).exception("worker: message %r failed", message[0])

    def _handle(self, message) -> None:
        kind = message[0]
        if kind == "generate":
            self._generate(message[1], message[2])
        elif kind == "cancel":
            channel = self.channels.get(message[1])
            if channel is not None:
                channel.cancel()
        elif kind == "embed":
            self._embed(*message[1:])
        elif kind == "call":
            self._call(*message[1:])
        elif kind == "cancel_load":
            self._load_cancelled.set()
        elif kind == "close":
            self._cancel_running = bool(message[1])
            self._close.set()

    def _generate(self, rid: int, request) -> None:
        from lms_jupyter.engine.events import Failed
        from lms_jupyter.errors import APIError

        channel = self.channels[rid] = _Channel(self, rid)
        assert self.model is not None  # narrowing only: requests come after "loaded"
        try:
            self.model.generate(request, channel)
        except APIError as exc:
            channel.put(Failed(exc))
            channel.close()

    def _embed(self, rid: int, texts, truncate: bool) -> None:
        from lms_jupyter.errors import APIError

        assert self.model is not None  # narrowing only: requests come after "loaded"
        try:
            future = self.model.embed(texts, truncate)
        except APIError as exc:
            self.send(("reply", rid, False, exc))
            return

        def done(f) -> None:
            error = f.exception()
            self.send(("reply", rid, error is None, error if error is not None else f.result()))

        future.add_done_callback(done)

    def _call(self, rid: int, name: str, args: tuple) -> None:
        from lms_jupyter.engine.worker.protocol import CALLS

        try:
            if name not in CALLS:
                raise ValueError(f"not a worker call: {name}")
            value = getattr(self.model, name)(*args)
        except Exception as exc:  # noqa: BLE001 - the caller gets the error
            self.send(("reply", rid, False, exc))
            return
        self.send(("reply", rid, True, value))


class _LlamaLines:
    """llama.cpp's log lines on their way to stderr, which the parent reads (it logs them
    and keeps the last ones for a crash report).

    A load writes about 2,900 lines; a write and a flush for each cost a SmolLM2 load 30 ms
    of its 135. So info and debug lines wait here and go in one write: when a warning or an
    error comes (it goes at once, after them), when a load ends, and at each status tick.
    A worker that dies meanwhile loses at most those lines; what a crash itself prints
    (``GGML_ASSERT``, an abort) bypasses this and reaches stderr directly.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._held: list[str] = []

    def __call__(self, line: str, level: int) -> None:
        with self._lock:
            self._held.append(line + "\n")
        if level >= GGML_LOG_WARN:
            self.flush()

    def drop(self) -> None:
        """Forget the held lines (a spare's warm-up: nothing about the model it will load)."""
        with self._lock:
            self._held = []

    def flush(self) -> None:
        with self._lock:
            held, self._held = self._held, []
        if held:
            sys.stderr.write("".join(held))
            sys.stderr.flush()


LLAMA_LINES = _LlamaLines()


class _StderrHandler(logging.StreamHandler):
    """Our own log records, after the llama.cpp lines that came before them."""

    def emit(self, record: logging.LogRecord) -> None:
        LLAMA_LINES.flush()
        super().emit(record)


def _logging_to_stderr() -> None:
    """Python's log lines (warnings and errors) and llama.cpp's (:class:`_LlamaLines`) go
    to stderr."""
    from lms_jupyter.engine.local.llama import send_llama_lines_to

    handler = _StderrHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    send_llama_lines_to(LLAMA_LINES)


def main(argv: list[str]) -> None:
    from multiprocessing.connection import Connection

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _logging_to_stderr()
    connection = Connection(int(argv[1]))
    # the imports a load needs, before the "load" message: a spare is ready at once, with
    # llama.cpp's backend initialised and its log lines routed (what the first Llama()
    # of a process does besides loading the weights)
    import llama_cpp

    from lms_jupyter.engine.local import model as _model  # noqa: F401
    from lms_jupyter.engine.local.llama import route_llama_logs, warm_up

    llama_cpp.llama_backend_init()
    route_llama_logs()
    if len(argv) > 2 and argv[2]:  # a spare: see warm_up
        warm_up(argv[2])
        LLAMA_LINES.drop()

    worker = Worker(connection)
    worker.send(("ready",))
    worker.run()


if __name__ == "__main__":
    main(sys.argv)
