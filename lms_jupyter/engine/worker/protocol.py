"""The wire between a :class:`~.proxy.WorkerModel` and its worker process.

Why a Unix socket pair with pickled tuples: the worker is a child of the server (or
kernel) that started it, so the two ends are created together (``socket.socketpair``)
and the child's end is inherited as a file descriptor. Nothing listens on a port or a
path, so nothing outside the two processes can reach a model; the socket closing is how
each side learns the other died (the worker exits at once when its parent is gone, even
when the parent was killed with SIGKILL); and ``multiprocessing.connection.Connection``
frames messages with a length prefix and pickles them, which costs a few microseconds for
a token event. ``multiprocessing`` with spawn was not used: its child re-imports the
parent's ``__main__`` (an IPython kernel's), and its pipes add nothing a socket pair lacks.

Messages are tuples whose first item is the kind:

parent -> worker
    ("load", LoadSpec)                  once, first
    ("cancel_load",)                    the load's progress callback said stop
    ("generate", rid, GenerationRequest)
    ("cancel", rid)                     the client went away / Stop / interrupt
    ("embed", rid, texts, truncate)
    ("call", rid, name, args)           a vocabulary lookup or engine_stats (CALLS)
    ("close", cancel_running)           unload: finish or stop the work, then exit

worker -> parent
    ("ready",)                          imported what a load needs (sent before "load")
    ("progress", fraction)              while the weights load
    ("loaded", LoadedFacts)             or ("load_failed", APIError)
    ("event", rid, engine event)        Started / TextDelta / Finished / Failed
    ("closed", rid)                     no more events for rid
    ("batch", [message, ...])           the "event"/"closed" messages of one decode step's
                                        slots, in order (one write for all of them)
    ("reply", rid, ok, value)           for "embed" and "call" (value: the error if not ok)
    ("status", InstanceStatus)          whenever the scheduler's status changes
    ("bye",)                            clean exit after "close"
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from multiprocessing.connection import Connection

from lms_jupyter.engine.options import LoadConfig

# what "call" may run in the worker (vocabulary lookups are safe beside generation)
CALLS = frozenset({"tokenize", "detokenize", "token_text", "is_control_text", "engine_stats"})


@dataclass
class LoadSpec:
    """What the worker loads: the catalog's description of the file and the settings."""

    info: object  # models.catalog.ModelInfo (its GGUF header without the big arrays)
    variant: object  # models.catalog.ModelVariant
    identifier: str
    config: LoadConfig
    stream_interval: float = 0.0  # seconds: see coalesce.py (ModelManager.stream_interval_ms)


@dataclass
class LoadedFacts:
    """What the worker reports once loaded; the proxy answers these without a round trip."""

    load_time_seconds: float
    n_threads: int | None  # LoadConfig.n_threads, which the load filled in
    bos_text: str
    eos_text: str
    pid: int


def connection_pair() -> tuple[Connection, socket.socket]:
    """The parent's Connection and the socket whose descriptor the child inherits."""
    parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    connection = Connection(parent.detach())
    child.set_inheritable(True)
    return connection, child
