"""``GET {base}lms/api/v0/logs/stream?source=model&filter=input,output&stats=true``:
``lms log stream`` over server-sent events.

Each SSE ``data:`` line is one LM Studio diagnostics event (``{"timestamp", "data"}``);
``event: dropped`` reports events lost because this reader fell behind; a comment every
few seconds keeps proxies from closing an idle stream and tells us when the client went
away. The stream ends when the client disconnects.
"""

from __future__ import annotations

import asyncio

from jupyter_server.auth.decorator import authorized
from tornado import web
from tornado.http1connection import HTTP1Connection
from tornado.iostream import StreamClosedError

from lms_jupyter import logs as logstream
from lms_jupyter.errors import bad_request
from lms_jupyter.server import sse
from lms_jupyter.server.base import LMSHandler


def _truthy(value: str | None) -> bool:
    return str(value or "").strip().lower() in ("1", "true", "yes", "on")


class LogStreamHandler(LMSHandler):
    keepalive_seconds = 10.0
    _subscription = None

    @web.authenticated
    @authorized
    async def get(self):
        try:
            log_filter = logstream.LogFilter.parse(
                self.get_argument("source", "model"),
                self.get_argument("filter", None),
                _truthy(self.get_argument("stats", None)),
            )
        except logstream.LogOptionsError as exc:
            self.write_api_error(bad_request(str(exc), "source"))
            return
        loop = asyncio.get_running_loop()
        wake = asyncio.Event()

        def waker():
            try:
                loop.call_soon_threadsafe(wake.set)
            except RuntimeError:  # the loop is gone
                pass

        sub = logstream.bus().subscribe(log_filter.source)
        sub.add_waker(waker)
        self._subscription = sub
        sse.open_stream(self)
        reported = 0
        try:
            self.write(sse.comment("streaming lms-jupyter logs"))
            await self.flush()
            while not sub.closed:
                try:
                    await asyncio.wait_for(wake.wait(), self.keepalive_seconds)
                except asyncio.TimeoutError:
                    self.write(sse.comment("keep-alive"))
                    await self.flush()
                    continue
                wake.clear()
                chunks = []
                if sub.dropped != reported:
                    chunks.append(sse.frame({"dropped": sub.dropped - reported}, "dropped"))
                    reported = sub.dropped
                while (event := sub.get_nowait()) is not None:
                    shown = log_filter.apply(event)
                    if shown is not None:
                        chunks.append(sse.frame(shown, ascii_only=False))
                if chunks:
                    self.write("".join(chunks))
                    await self.flush()
        except StreamClosedError:
            pass
        finally:
            sub.close()
        connection = self.request.connection  # Tornado's server: an HTTP1Connection
        if not (isinstance(connection, HTTP1Connection) and connection.stream.closed()):
            self.finish()

    def on_connection_close(self) -> None:
        if self._subscription is not None:
            self._subscription.close()
