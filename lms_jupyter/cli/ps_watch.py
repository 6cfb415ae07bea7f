"""``ps --watch`` (``%lms ps --watch`` in a kernel, ``lms-jupyter ps --watch`` in a
terminal): the model events as lines, until Ctrl+C, ``--timeout`` or a stop.

Connected to a server (the CLI, or a kernel after ``%lms connect``), the events come from
its ``GET {root}/api/v0/events`` stream, the one the sidebar reads. With this process's
own models they come from the same rules (:func:`diff_rows`) applied here: the manager's
listener wakes the comparison at once, and it also runs every ``interval`` seconds for
the changes the manager does not announce (progress, status, queue).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator

from lms_jupyter.api.lmstudio.instance_events import EVENT_KINDS, diff_rows


def local_rows(manager) -> list[dict]:
    """This process's ``ps`` rows (the loaded, the crashed and the loading instances)."""
    from lms_jupyter.api import views

    rows = [views.ps_row(m) for m in manager.list_instances()]
    rows += [views.loading_row(load) for load in list(manager.loads_in_progress.values())]
    return rows


def watch_local(
    manager,
    *,
    timeout: float | None = None,
    stop: threading.Event | None = None,
    interval: float = 0.25,
) -> Iterator[dict]:
    """The snapshot, then each change of this process's rows (blocking)."""
    wake = threading.Event()
    unsubscribe = manager.subscribe(lambda _event, _snapshot: wake.set())
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        current = {r["identifier"]: r for r in local_rows(manager)}
        yield {"kind": "snapshot", "data": list(current.values()), "time": int(time.time() * 1000)}
        while not (stop is not None and stop.is_set()):
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return
            wake.wait(interval if left is None else min(interval, left))
            wake.clear()
            rows = {r["identifier"]: r for r in local_rows(manager)}
            yield from diff_rows(current, rows)
            current = rows
    finally:
        unsubscribe()


def watch_server(root: str, token: str | None, *, timeout: float | None = None) -> Iterator[dict]:
    """The events of a server's ``/api/v0/events`` stream (``root``: ``.../lms``)."""
    from lms_jupyter import logs as logstream

    return logstream.read_sse(
        f"{root.rstrip('/')}/api/v0/events",
        token,
        timeout=timeout,
        accept=EVENT_KINDS,
    )


def _row_state(row: dict) -> str:
    status = row.get("status") or "?"
    if status == "loading":
        progress = row.get("loadProgress")
        return (
            f"loading {round(progress * 100)}%" if isinstance(progress, (int, float)) else "loading"
        )
    if status == "crashed":
        reason = (row.get("crash") or {}).get("reason", "its worker process died")
        return f"crashed: {reason}"
    return f"{status}, queued {row.get('queued', 0)}"


def event_line(event: dict) -> str:
    """One line a person reads: ``23:05:01  loaded    smollm2-135m-instruct  idle, queued 0``."""
    stamp = time.strftime("%H:%M:%S", time.localtime(event.get("time", time.time() * 1000) / 1000))
    kind = event.get("kind", "?")
    if kind == "snapshot":
        rows = event.get("data") or []
        if not rows:
            return f"{stamp}  no models loaded"
        return "\n".join(
            f"{stamp}  {'running':<9} {r.get('identifier')}  {_row_state(r)}" for r in rows
        )
    identifier = event.get("identifier", "?")
    if kind == "unloaded":
        what = "load ended before it finished" if event.get("wasLoading") else ""
        return f"{stamp}  {kind:<9} {identifier}  {what}".rstrip()
    return f"{stamp}  {kind:<9} {identifier}  {_row_state(event.get('row') or {})}"


def run_ps_watch(
    manager, console, *, as_json: bool, timeout: float | None, stop: threading.Event | None = None
) -> None:
    """Print the events until Ctrl+C, the timeout or ``stop``."""
    connection = getattr(manager, "connection", None)
    if connection is not None:
        events = watch_server(connection.root, connection.token, timeout=timeout)
        where = f" of the server at {connection.root}"
    else:
        events = watch_local(manager, timeout=timeout, stop=stop)
        where = ""
    printer: Callable[[dict], None] = (
        (lambda event: console.print(json.dumps(event, ensure_ascii=False)))
        if as_json
        else (lambda event: console.print(event_line(event)))
    )  # JSON: one event a line
    if not as_json or not getattr(console, "notes_on_stdout", False):
        console.note(f"Watching the models{where} (Ctrl+C stops)\n")
    try:
        for event in events:
            printer(event)
    except KeyboardInterrupt:
        pass
    finally:
        close = getattr(events, "close", None)
        if close is not None:
            close()
