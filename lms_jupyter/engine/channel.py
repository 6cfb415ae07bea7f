"""Hand events from a model's worker thread to whoever consumes them.

The same channel serves a blocking reader (the kernel's magics) and an asyncio reader
(Tornado), so generation never runs on the event loop yet tokens arrive there promptly.
"""

from __future__ import annotations

import asyncio
import queue
import threading

_END = object()


class EventChannel:
    def __init__(self, loop: asyncio.AbstractEventLoop | None = None):
        self.cancel_event = threading.Event()
        self._loop = loop
        self._async_queue: asyncio.Queue | None = asyncio.Queue() if loop else None
        self._sync_queue: queue.SimpleQueue = queue.SimpleQueue()
        self.closed = False
        self.cancelled_by_client = False
        self._on_cancel: list = []  # callbacks (a remote relay closes its request)

    @classmethod
    def for_running_loop(cls) -> EventChannel:
        return cls(asyncio.get_running_loop())

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The event loop an asyncio reader runs on (None: a blocking reader)."""
        return self._loop

    def on_cancel(self, callback) -> None:
        """Call ``callback()`` when the consumer cancels (at once if it already did)."""
        if self.cancel_event.is_set():
            callback()
        else:
            self._on_cancel.append(callback)

    def put(self, event) -> None:
        """Called on the worker thread."""
        if self._loop is None:
            self._sync_queue.put(event)
            return
        assert self._async_queue is not None  # made together with the loop
        try:
            self._loop.call_soon_threadsafe(self._async_queue.put_nowait, event)
        except RuntimeError:  # the loop is gone: nobody is listening any more
            self.cancel_event.set()

    def close(self) -> None:
        """Called on the worker thread when no more events will come."""
        if not self.closed:
            self.closed = True
            self.put(_END)

    def cancel(self) -> None:
        """The consumer stopped listening (disconnect, interrupt, closed iterator)."""
        self.cancelled_by_client = True
        self.cancel_event.set()
        callbacks, self._on_cancel = self._on_cancel, []
        for callback in callbacks:
            callback()

    @property
    def cancelled(self) -> bool:
        return self.cancel_event.is_set()

    def __iter__(self):
        while True:
            event = self._sync_queue.get()
            if event is _END:
                return
            yield event

    def get_blocking(self, timeout: float):
        """The next event for a blocking reader, or None once closed or after ``timeout``."""
        try:
            event = self._sync_queue.get(timeout=timeout)
        except queue.Empty:
            return None
        if event is _END:
            self._sync_queue.put(_END)
            return None
        return event

    async def get(self):
        """The next event, or None once the channel is closed."""
        assert self._async_queue is not None  # an asyncio reader's channel has its loop
        event = await self._async_queue.get()
        if event is _END:
            self._async_queue.put_nowait(_END)
            return None
        return event

    def get_nowait(self):
        """An event already waiting, else None (lets a writer batch a burst of tokens)."""
        assert self._async_queue is not None  # an asyncio reader's channel has its loop
        try:
            event = self._async_queue.get_nowait()
        except asyncio.QueueEmpty:
            return None
        if event is _END:
            self._async_queue.put_nowait(_END)
            return None
        return event

    def __aiter__(self):
        return self._aiter()

    async def _aiter(self):
        while True:
            event = await self.get()
            if event is None:
                return
            yield event


async def run_blocking(fn, *args):
    """Run blocking work (model loads, JIT loads) on a thread, off the event loop."""
    return await asyncio.get_running_loop().run_in_executor(None, fn, *args)
