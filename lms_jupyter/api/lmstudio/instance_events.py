"""The model event feed: what changed in the ``ps`` rows, pushed to every subscriber.

Why a feed and not the manager's listeners alone: ``ModelManager.subscribe`` reports
"loaded", "unloaded" and "crashed" the moment they happen, but a load's progress, an
instance's status (idle, processing prompt, generating) and its queue change inside the
worker proxies without a notification. So the feed keeps the rows it last published and
compares them with fresh ones: at once when the manager reports something, every
``active_interval`` while a model loads or works, every ``idle_interval`` otherwise. The
comparison is of in-process state (no HTTP), on a thread (a remote engine's listing may
do I/O), and runs only while someone subscribes. One feed per manager serves any number
of subscribers; each gets the full snapshot first, then the changes, so a client that
(re)connects never has to poll.

Events (``kind``), each with the instance's ``identifier`` and ``modelKey``:

- ``snapshot``: ``data`` holds every row (always the first event of a subscription);
- ``loading``: a load started (``row.status == "loading"``);
- ``progress``: a load's ``row.loadProgress`` moved;
- ``loaded``: an instance is ready; ``crashed``: its worker died (``row.crash.reason``);
- ``status`` / ``queue``: ``row.status`` / ``row.queued`` changed;
- ``unloaded``: the instance is gone (``wasLoading``: a load that failed or was cancelled).

Every event but ``unloaded`` and ``snapshot`` carries the new ``row``, so a client just
replaces its row by identifier.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Callable

log = logging.getLogger(__name__)

EVENT_KINDS = (
    "snapshot",
    "loading",
    "progress",
    "loaded",
    "crashed",
    "status",
    "queue",
    "unloaded",
)
BUSY_STATUSES = {"loading", "processingPrompt", "generating", "computingEmbedding"}


def _event(kind: str, identifier: str, model_key: str | None, row: dict | None, **extra) -> dict:
    event: dict = {
        "kind": kind,
        "identifier": identifier,
        "modelKey": model_key,
        "time": int(time.time() * 1000),
    }
    if row is not None:
        event["row"] = row
    event.update(extra)
    return event


def diff_rows(old: dict[str, dict], new: dict[str, dict]) -> list[dict]:
    """The events that take a client from rows ``old`` to rows ``new`` (both keyed by
    identifier). Pure, so the rules are tested without a server."""
    events: list[dict] = []
    for identifier, row in new.items():
        key = row.get("modelKey")
        status = row.get("status")
        before = old.get(identifier)
        if before is None:
            kind = (
                "loading" if status == "loading" else "crashed" if status == "crashed" else "loaded"
            )
            events.append(_event(kind, identifier, key, row))
            continue
        was = before.get("status")
        if was == "loading" and status != "loading":
            events.append(
                _event("crashed" if status == "crashed" else "loaded", identifier, key, row)
            )
            continue
        if status == "loading":
            if row.get("loadProgress") != before.get("loadProgress"):
                events.append(_event("progress", identifier, key, row))
            continue
        if status != was:
            events.append(
                _event("crashed" if status == "crashed" else "status", identifier, key, row)
            )
        if row.get("queued") != before.get("queued"):
            events.append(_event("queue", identifier, key, row))
    for identifier, before in old.items():
        if identifier not in new:
            events.append(
                _event(
                    "unloaded",
                    identifier,
                    before.get("modelKey"),
                    None,
                    wasLoading=before.get("status") == "loading",
                )
            )
    return events


class Subscription:
    """One reader's queue of events; ``None`` in it means the feed closed it."""

    def __init__(self, feed: ModelEventFeed):
        self._feed = feed
        self.queue: asyncio.Queue = asyncio.Queue()
        self.closed = False

    async def get(self, timeout: float | None = None) -> dict | None:
        """The next event; raises ``TimeoutError`` after ``timeout`` seconds without one."""
        return await asyncio.wait_for(self.queue.get(), timeout)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.queue.put_nowait(None)
            self._feed._remove(self)


_FEEDS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # manager -> its feed


class ModelEventFeed:
    """The ``ps`` rows of one manager, published as change events (see the module doc)."""

    active_interval = 0.25  # seconds between comparisons while a model loads or works
    idle_interval = 1.0

    def __init__(self, manager, rows: Callable[[], list[dict]]):
        """``rows()``: the current ``ps`` rows (``LMStudioAPI.ps()["data"]``)."""
        self.manager = manager
        self._rows_fn = rows
        self._rows: dict[str, dict] = {}
        self._subscribers: list[Subscription] = []
        self._task: asyncio.Task | None = None
        self._wake: asyncio.Event | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @classmethod
    def for_manager(cls, manager, rows: Callable[[], list[dict]]) -> ModelEventFeed:
        """The one feed of ``manager`` (created on first use)."""
        feed = _FEEDS.get(manager)
        if feed is None:
            feed = _FEEDS[manager] = cls(manager, rows)
        return feed

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    async def subscribe(self) -> Subscription:
        """A new subscription whose first event is the snapshot of every row."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # first use, or a new event loop (tests)
            self._loop, self._task, self._wake = loop, None, asyncio.Event()
        rows = await self._read_rows()
        sub = Subscription(self)
        if not self._subscribers:
            self._rows = rows  # nobody was told anything since the last reader left
            self._unsubscribe = self.manager.subscribe(self._on_manager_event)
        else:
            self._publish(diff_rows(self._rows, rows))
            self._rows = rows
        self._subscribers.append(sub)
        sub.queue.put_nowait(
            {"kind": "snapshot", "data": list(self._rows.values()), "time": int(time.time() * 1000)}
        )
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._watch())
        return sub

    def _remove(self, sub: Subscription) -> None:
        if sub in self._subscribers:
            self._subscribers.remove(sub)
        if not self._subscribers:
            if self._unsubscribe is not None:
                self._unsubscribe()
                self._unsubscribe = None
            if self._wake is not None:
                self._wake.set()  # the watcher sees nobody is left and ends

    def _on_manager_event(self, event: str, snapshot: dict) -> None:
        """From whichever thread loaded, unloaded or lost a model: compare now."""
        loop, wake = self._loop, self._wake
        if loop is None or wake is None:
            return
        try:
            loop.call_soon_threadsafe(wake.set)
        except RuntimeError:  # the loop is closed: nobody listens any more
            pass

    async def _read_rows(self) -> dict[str, dict]:
        rows = await asyncio.to_thread(self._rows_fn)
        return {row["identifier"]: row for row in rows if row.get("identifier")}

    def _publish(self, events: list[dict]) -> None:
        for event in events:
            for sub in list(self._subscribers):
                sub.queue.put_nowait(event)

    async def _watch(self) -> None:
        wake = self._wake
        assert wake is not None
        while self._subscribers:
            busy = any(r.get("status") in BUSY_STATUSES for r in self._rows.values())
            try:
                await asyncio.wait_for(
                    wake.wait(), self.active_interval if busy else self.idle_interval
                )
            except asyncio.TimeoutError:
                pass
            wake.clear()
            if not self._subscribers:
                break
            try:
                rows = await self._read_rows()
            except Exception:
                log.exception("lms_jupyter: reading the ps rows for model events failed")
                continue
            events = diff_rows(self._rows, rows)
            self._rows = rows
            self._publish(events)
