"""``lms log stream``: LM Studio's diagnostics events, published in-process to any reader.

- :mod:`.bus`: the one bus per process, its bounded per-reader buffers, secret masking and
  the ``server.log`` lines (HTTP requests, start-up, the ``lms_jupyter`` logger);
- :mod:`.predictions`: ``llm.prediction.input`` / ``.output`` from each generation;
- :mod:`.render`: which events a reader wants and LM Studio's text or JSON rendering;
- :mod:`.readers`: following this process's bus or a server's SSE route;
- :mod:`.stop`: how every follower stops without SIGINT.

Fronts import this package (``from lms_jupyter import logs``) and use the names below.
"""

from lms_jupyter.logs.bus import (
    MODEL_INPUT,
    MODEL_OUTPUT,
    SERVER_LOG,
    SOURCES,
    LogBus,
    Subscription,
    bus,
    log_request,
    server_line,
    server_log,
    server_started,
)
from lms_jupyter.logs.predictions import on_generation_event, prediction_stats
from lms_jupyter.logs.readers import follow, read_sse, sse_url
from lms_jupyter.logs.render import LogFilter, LogOptionsError, render_json, render_text
from lms_jupyter.logs.stop import signals_stop_streams, stop_streams

__all__ = [
    "MODEL_INPUT",
    "MODEL_OUTPUT",
    "SERVER_LOG",
    "SOURCES",
    "LogBus",
    "LogFilter",
    "LogOptionsError",
    "Subscription",
    "bus",
    "follow",
    "log_request",
    "on_generation_event",
    "prediction_stats",
    "read_sse",
    "render_json",
    "render_text",
    "server_line",
    "server_log",
    "server_started",
    "signals_stop_streams",
    "sse_url",
    "stop_streams",
]
