"""The server's (or kernel's) handle on a model that runs in a worker process.

A :class:`WorkerModel` is what the manager lists and the API uses for a local model. It
starts the process (:mod:`.child`, or takes a spare that :class:`SparePool` started ahead
of need), relays requests and their events over the socket (:mod:`.protocol`), answers
status and queue length from what the worker last reported, and turns the process's death
into a :class:`~.crash.CrashReport`: every running and waiting request ends with the 503
``model_crashed`` error at once, and the manager is told (``on_exit``).
"""

from __future__ import annotations

import collections
import itertools
import logging
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import Future

from lms_jupyter.engine.channel import EventChannel
from lms_jupyter.engine.events import Failed, Finished, TextDelta
from lms_jupyter.engine.instance import Capabilities, InstanceStatus, local_snapshot
from lms_jupyter.engine.options import LoadConfig
from lms_jupyter.engine.worker.crash import CrashReport
from lms_jupyter.engine.worker.protocol import LoadedFacts, LoadSpec, connection_pair
from lms_jupyter.errors import APIError, not_a_chat_model, queue_full

log = logging.getLogger("lms_jupyter.worker")
STDERR_LINES = 40  # kept for a crash report
CALL_TIMEOUT = 30.0
KILL_AFTER_CLOSE_SECONDS = 15.0  # an unload whose worker does not exit by then is killed

LLM_CAPABILITIES = Capabilities(
    chat=True,
    completion=True,
    embeddings=True,
    tools=True,
    draft=True,
    vocabulary=True,
    restartable=True,
)
EMBEDDING_CAPABILITIES = Capabilities(
    chat=False, completion=False, embeddings=True, tools=False, vocabulary=False, restartable=True
)


# The worker imports this very copy of the package (a checkout, a wheel, an editable
# install), whatever the current directory or sys.path of the parent looks like.
_BOOTSTRAP = (
    "import sys; root = sys.argv[1]; sys.path.insert(0, root) if root not in sys.path "
    "else None; from lms_jupyter.engine.worker.child import main; "
    "main([sys.argv[0], *sys.argv[2:]])"
)


def _package_root() -> str:
    return os.path.dirname(
        os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    )


class WorkerProcess:
    """A started worker process and its socket, waiting for its "load" message."""

    def __init__(self, warm_with: str | None = None):
        """``warm_with``: a GGUF whose vocabulary the process loads before it is ready (a
        spare's warm-up, :func:`~lms_jupyter.engine.local.llama.warm_up`); never for a
        process a load is waiting on."""
        self.connection, child_socket = connection_pair()
        fd = child_socket.fileno()
        extra = [warm_with] if warm_with else []
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-c", _BOOTSTRAP, _package_root(), str(fd), *extra],
                pass_fds=(fd,),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                close_fds=True,
            )
        finally:
            child_socket.close()

    def wait_ready(self, timeout: float) -> bool:
        """Wait until the process has imported what a load needs (its "ready" message)."""
        if not self.connection.poll(timeout):
            return False
        return self.connection.recv() == ("ready",)

    def discard(self) -> None:
        """A spare nobody will use: closing its socket makes it exit."""
        try:
            self.connection.close()
        except OSError:
            pass
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()


class SparePool:
    """One worker process started ahead of the next load, so a load costs what loading
    the weights costs: the interpreter and llama.cpp are already imported there.

    A spare is started when a load has finished and nothing generates (``quiet()``), never
    during a load: its start (Python, numpy and llama.cpp imports, about 0.3 s of CPU) on
    a core the load or a stream needs made a spare-worker load 1.5x an in-process one on
    two cores (benchmarks/bench_workers.py), and 1.1x once it waited. The spare also loads
    the vocabulary of the model loaded last (``warm_with``), so the first load of its
    process costs what a later one does."""

    QUIET_POLL_SECONDS = 0.1
    QUIET_WAIT_SECONDS = 30.0  # busy for this long: start the spare anyway

    def __init__(self, enabled: bool = True, quiet=None, warm_with: str | None = None):
        self.enabled = enabled
        self._quiet = quiet  # () -> bool: no load and no request running
        self.warm_with = warm_with  # a GGUF for the spare's warm-up: the last one loaded
        self._lock = threading.Lock()
        self._spare: WorkerProcess | None = None
        self._closed = False
        self._starting = False

    def take(self) -> WorkerProcess:
        """The spare, or a new process; the caller calls :meth:`refill` once its load
        is done."""
        with self._lock:
            spare, self._spare = self._spare, None
        if spare is not None and spare.process.poll() is None:
            return spare
        if spare is not None:
            spare.discard()
        return WorkerProcess()

    def refill(self, warm_with: str | None = None) -> None:
        """Start a spare in the background (at most one), once things are quiet;
        ``warm_with``: the GGUF just loaded (the next spare's warm-up uses it)."""
        if warm_with:
            self.warm_with = warm_with
        if not self.enabled:
            return
        with self._lock:
            if self._closed or self._spare is not None or self._starting:
                return
            self._starting = True

        def start() -> None:
            try:
                deadline = time.monotonic() + self.QUIET_WAIT_SECONDS
                while self._quiet is not None and time.monotonic() < deadline:
                    try:
                        if self._quiet():
                            break
                    except Exception:  # noqa: BLE001 - a listing mid-change: ask again
                        pass
                    time.sleep(self.QUIET_POLL_SECONDS)
                with self._lock:
                    if self._closed or self._spare is not None:
                        return
                    try:
                        self._spare = WorkerProcess(self.warm_with)
                    except OSError as exc:
                        log.warning("lms_jupyter: could not start a spare worker: %s", exc)
            finally:
                self._starting = False

        threading.Thread(target=start, name="lms-spare-worker", daemon=True).start()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            spare, self._spare = self._spare, None
        if spare is not None:
            spare.discard()


class _Pending:
    """A request in flight in the worker: a generation's channel or a call's future."""

    __slots__ = ("channel", "future", "request", "counted")

    def __init__(self, channel=None, future=None, request=None, counted: bool = True):
        self.channel, self.future, self.request = channel, future, request
        self.counted = counted  # a generation or embedding: it counts in ``queued``


class WorkerModel:
    """A local model instance in its own worker process (see the module docstring)."""

    def __init__(
        self,
        info,
        variant,
        identifier: str,
        config: LoadConfig,
        *,
        ttl: float | None = None,
        jit: bool = False,
        on_exit=None,
        spares: SparePool | None = None,
        on_event=None,
        stream_interval: float = 0.0,
    ):
        self.info = info
        self.stream_interval = stream_interval  # seconds: see coalesce.py
        self.variant = variant
        self.identifier = identifier
        self.config = config
        self.ttl = ttl
        self.jit = jit
        self.loaded_at = self.last_used = time.time()
        self.load_time_seconds = 0.0
        self.estimated_bytes = 0
        self.max_queued = 0
        self.embedding_only = variant.is_embedding
        self.capabilities = EMBEDDING_CAPABILITIES if self.embedding_only else LLM_CAPABILITIES
        self.closed = False
        self.crash: CrashReport | None = None
        self.facts: LoadedFacts | None = None
        self._on_exit = on_exit
        self._on_event = on_event  # (model, request, engine event): the log stream
        self._spares = spares
        self._status = InstanceStatus.IDLE
        self._pending: dict[int, _Pending] = {}
        self._queued = 0
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._stderr: collections.deque[str] = collections.deque(maxlen=STDERR_LINES)
        self._phase = "load"
        self._loaded = threading.Event()
        self._load_error: APIError | None = None
        self._load_progress = None
        self._worker: WorkerProcess | None = None
        self._exited = threading.Event()
        self._expected_exit = False

    # -- lifecycle ------------------------------------------------------------------------------
    def load(self, progress=None) -> WorkerModel:
        """Start (or take a spare) worker and load the weights there (blocking).
        ``progress(fraction)`` may return False to cancel (``LoadCancelled``)."""
        from lms_jupyter.engine.options import LoadCancelled

        started = time.perf_counter()
        self._load_progress = progress
        self._worker = self._spares.take() if self._spares is not None else WorkerProcess()
        threading.Thread(
            target=self._read_stderr, name=f"lms-stderr-{self.identifier}", daemon=True
        ).start()
        threading.Thread(
            target=self._read_events, name=f"lms-events-{self.identifier}", daemon=True
        ).start()
        self._send(
            (
                "load",
                LoadSpec(
                    self.info, self.variant, self.identifier, self.config, self.stream_interval
                ),
            )
        )
        self._loaded.wait()
        if self._spares is not None:
            self._spares.refill(str(self.variant.path))  # the weights are in: see SparePool
        if self.crash is not None:
            raise self.crash.error()
        if self.facts is None:
            self._expected_exit = True
            self._reap(timeout=10)
            if self._load_error is None:
                raise LoadCancelled()
            raise self._load_error
        self.config.n_threads = self.facts.n_threads
        self.load_time_seconds = time.perf_counter() - started
        self.loaded_at = self.last_used = time.time()
        self._phase = "first decode"
        return self

    @property
    def pid(self) -> int | None:
        return self._worker.process.pid if self._worker is not None else None

    @property
    def alive(self) -> bool:
        return self._worker is not None and self._worker.process.poll() is None

    def close(self, wait: bool = True, cancel_running: bool = True) -> None:
        """Unload: the worker stops (or, with ``cancel_running=False``, finishes) its
        requests and exits, which gives every byte it held back to the system."""
        if self.closed:
            return
        self.closed = True
        self._expected_exit = True
        self._send(("close", cancel_running))
        if cancel_running:
            timer = threading.Timer(KILL_AFTER_CLOSE_SECONDS, self._kill_if_alive)
            timer.daemon = True
            timer.start()
        if wait:
            self.join(timeout=30)

    def _kill_if_alive(self) -> None:
        if self.alive:
            log.warning(
                "lms_jupyter: worker of %s did not exit after unload; killing it", self.identifier
            )
            assert self._worker is not None  # narrowing only: alive implies a worker
            self._worker.process.kill()

    def join(self, timeout: float | None = 30.0) -> bool:
        """Wait for the worker process to end after :meth:`close`; True when it has."""
        if self._worker is None:
            return True
        return self._exited.wait(timeout)

    def kill(self) -> None:
        """End the worker at once (tests, and a manager that must not wait)."""
        if self._worker is not None and self.alive:
            self._worker.process.kill()

    # -- what listings show -------------------------------------------------------------------
    @property
    def status(self) -> str:
        if self.crash is not None:
            return InstanceStatus.CRASHED
        if self._queued == 0:  # nothing running or waiting: idle, whatever was last polled
            return InstanceStatus.IDLE
        return self._status

    @property
    def queued(self) -> int:
        """Requests waiting or running (LM Studio counts the running ones)."""
        return self._queued

    @property
    def busy(self) -> bool:
        return self._queued > 0

    @property
    def slots(self) -> int | None:
        """Requests it generates at once (its ``parallel``); None for an embedding model."""
        return None if self.embedding_only else self.config.parallel

    def resident_bytes(self) -> int | None:
        """The worker's resident memory (what ``lms ps`` shows as the instance's)."""
        pid = self.pid
        if pid is None or not self.alive:
            return None
        try:
            with open(f"/proc/{pid}/statm", encoding="ascii") as statm:
                return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):
            return None

    def snapshot(self) -> dict:
        """What `lms ps` shows for this instance."""
        return {
            **local_snapshot(self),
            "pid": self.pid,
            "residentBytes": self.resident_bytes(),
            "kvCacheType": self.config.kv_cache_type,
            "flashAttention": self.config.flash_attention,
            "crash": self.crash.as_dict() if self.crash is not None else None,
        }

    # -- work ---------------------------------------------------------------------------------
    def _refuse_if_gone(self) -> None:
        if self.crash is not None:
            raise self.crash.error()
        if self.closed:
            from lms_jupyter.errors import model_unloaded

            raise model_unloaded(self.identifier)

    def generate(self, request, channel: EventChannel) -> None:
        """Queue a generation in the worker; its events go to ``channel``."""
        if self.embedding_only:
            raise not_a_chat_model(self.identifier)
        with self._lock:
            self._refuse_if_gone()
            if self.max_queued and self._queued >= self.max_queued:
                raise queue_full(self.identifier, self.max_queued)
            rid = next(self._ids)
            self._pending[rid] = _Pending(channel=channel, request=request)
            self._queued += 1
        self.last_used = time.time()
        channel.on_cancel(lambda: self._send(("cancel", rid), quiet=True))
        self._send(("generate", rid, request))

    def embed(self, texts: list, truncate: bool = False) -> Future:
        """Embeddings of texts and/or token-id lists; the future gives an EmbeddingResult."""
        future: Future = Future()
        with self._lock:
            self._refuse_if_gone()
            rid = next(self._ids)
            self._pending[rid] = _Pending(future=future)
            self._queued += 1
        self.last_used = time.time()
        self._send(("embed", rid, list(texts), truncate))
        return future

    def call(self, name: str, *args, timeout: float = CALL_TIMEOUT):
        """Run ``name(*args)`` of the worker's model (protocol.CALLS) and return its value."""
        future: Future = Future()
        with self._lock:
            self._refuse_if_gone()
            rid = next(self._ids)
            self._pending[rid] = _Pending(future=future, counted=False)
        self._send(("call", rid, name, args))
        return future.result(timeout)

    def tokenize(self, text: str, add_bos: bool = False, special: bool = True) -> list[int]:
        return self.call("tokenize", text, add_bos, special)

    def detokenize(self, tokens: list[int]) -> str:
        return self.call("detokenize", list(tokens))

    def token_text(self, token: int) -> str:
        return self.call("token_text", token)

    def is_control_text(self, text: str) -> bool:
        return self.call("is_control_text", text)

    def engine_stats(self) -> dict:
        """The worker's scheduler counters and slots (tests and benchmarks)."""
        return self.call("engine_stats")

    @property
    def bos_text(self) -> str:
        return self.facts.bos_text if self.facts else ""

    @property
    def eos_text(self) -> str:
        return self.facts.eos_text if self.facts else ""

    @property
    def adds_bos(self) -> bool:
        return bool(self.variant.header.get("tokenizer.ggml.add_bos_token", True))

    # -- the socket ---------------------------------------------------------------------------
    def _send(self, message, quiet: bool = False) -> None:
        assert self._worker is not None  # narrowing only: start() made it, never unset
        try:
            with self._send_lock:
                self._worker.connection.send(message)
        except (OSError, ValueError):
            if not quiet and not self._exited.is_set():
                self._exited.wait(5)  # the reader is reporting the death
            if not quiet:
                self._refuse_if_gone()
                raise APIError(
                    f'The worker of model "{self.identifier}" is gone.',
                    503,
                    "server_error",
                    "model",
                    "model_crashed",
                ) from None

    def _read_events(self) -> None:
        assert self._worker is not None  # narrowing only: start() made it, never unset
        connection = self._worker.connection
        while True:
            try:
                message = connection.recv()
            except (EOFError, OSError):
                break
            except Exception:
                log.exception("lms_jupyter: unreadable message from %s's worker", self.identifier)
                continue
            try:
                self._dispatch(message)
            except Exception:
                log.exception(
                    "lms_jupyter: handling a message from %s's worker failed", self.identifier
                )
        self._worker_gone()

    def _dispatch(self, message) -> None:
        kind = message[0]
        if kind == "batch":  # one step's events of several slots, in order
            for item in message[1]:
                self._dispatch(item)
        elif kind == "event":
            _, rid, event = message
            pending = self._pending.get(rid)
            if pending is None:
                return
            if self._phase == "first decode" and isinstance(event, (TextDelta, Finished)):
                self._phase = "generation"
            if self._on_event is not None:
                self._on_event(self, pending.request, event)
            pending.channel.put(event)
        elif kind == "closed":
            with self._lock:
                pending = self._pending.pop(message[1], None)
                if pending is not None:
                    self._queued -= 1
            if pending is not None:
                self.last_used = time.time()
                pending.channel.close()
        elif kind == "reply":
            _, rid, ok, value = message
            with self._lock:
                pending = self._pending.pop(rid, None)
                if pending is not None and pending.counted:
                    self._queued -= 1
            if pending is None:
                return
            self.last_used = time.time() if pending.counted else self.last_used
            if ok:
                pending.future.set_result(value)
            else:
                pending.future.set_exception(
                    value if isinstance(value, Exception) else APIError(str(value), 500)
                )
        elif kind == "status":
            self._status = message[1]
        elif kind == "progress":
            self._on_progress(message[1])
        elif kind == "loaded":
            self.facts = message[1]
            self._loaded.set()
        elif kind == "load_failed":
            self._load_error = message[1]
            self._loaded.set()
        elif kind == "bye":
            self._expected_exit = True

    def _on_progress(self, fraction: float) -> None:
        if self._load_progress is None:
            return
        try:
            keep_going = self._load_progress(fraction)
        except Exception:  # noqa: BLE001 - a progress view must not break the load
            keep_going = True
        if keep_going is False:
            self._send(("cancel_load",), quiet=True)

    def _read_stderr(self) -> None:
        assert self._worker is not None  # narrowing only: start() made it, never unset
        stream = self._worker.process.stdout
        assert stream is not None  # narrowing only: the worker starts with stdout piped
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", errors="replace").rstrip()
            if line:
                self._stderr.append(line)
                log.debug("[%s] %s", self.identifier, line)
        stream.close()

    def _reap(self, timeout: float) -> int | None:
        assert self._worker is not None  # narrowing only: start() made it, never unset
        process = self._worker.process
        try:
            return process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            return process.wait()

    def _worker_gone(self) -> None:
        """The socket closed: the worker exited. Unexpectedly: a crash."""
        returncode = self._reap(timeout=10)
        assert self._worker is not None  # narrowing only: start() made it, never unset
        try:
            self._worker.connection.close()
        except OSError:
            pass
        time.sleep(0.05)  # the stderr reader takes the last lines
        if not self._expected_exit:
            self.crash = CrashReport(self.identifier, returncode, list(self._stderr), self._phase)
            log.error("lms_jupyter: %s", self.crash.message)
        error = self.crash.error() if self.crash is not None else None
        with self._lock:
            pending, self._pending = list(self._pending.values()), {}
            self._queued = 0
        for entry in pending:
            failure = error
            if failure is None:
                from lms_jupyter.errors import model_unloaded

                failure = model_unloaded(self.identifier, during=True)
            if entry.channel is not None:
                entry.channel.put(Failed(failure))
                entry.channel.close()
            elif entry.future is not None and not entry.future.done():
                entry.future.set_exception(failure)
        self._status = InstanceStatus.IDLE
        self._loaded.set()
        self._exited.set()
        if self._on_exit is not None:
            try:
                self._on_exit(self)
            except Exception:
                log.exception("lms_jupyter: the manager's exit handler failed")
