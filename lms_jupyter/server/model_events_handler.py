"""``GET {base}lms/api/v0/events``: the model event feed (:mod:`lms_jupyter.api.lmstudio.instance_events`)
as server-sent events, for the sidebar and ``ps --watch``.

Each event is framed by :meth:`LMSHandler.format_event` (``event: <kind>`` and one
``data:`` JSON line); the first one is ``snapshot`` with every ``ps`` row, so a client
that connects (or reconnects after a server restart) needs no other request to be up to
date. A comment every ``heartbeat_seconds`` keeps proxies from closing an idle stream
and finds a client that left. The stream never ends by itself: it ends when the client
disconnects or the server stops (so it is not one of the streams shutdown waits for).
"""

from __future__ import annotations

import asyncio

from jupyter_server.auth.decorator import authorized
from tornado import web

from lms_jupyter.api.lmstudio.instance_events import ModelEventFeed
from lms_jupyter.api.results import StreamResponse
from lms_jupyter.server.base import LMSHandler


class ModelEventsHandler(LMSHandler):
    heartbeat_seconds = 15.0

    @web.authenticated
    @authorized
    async def get(self):
        services = self.services
        feed = ModelEventFeed.for_manager(services.manager, lambda: services.lmstudio.ps()["data"])
        sub = await feed.subscribe()
        heartbeat = self.heartbeat_seconds

        async def events():
            try:
                while True:
                    try:
                        event = await sub.get(heartbeat)
                    except asyncio.TimeoutError:
                        yield {"__comment__": "keep-alive"}
                        continue
                    if event is None:
                        return
                    yield {"__event__": event["kind"], **event}
            finally:
                sub.close()

        self.set_header("Cache-Control", "no-cache, no-store")
        # the shared SSE writer, without joining the streams that shutdown waits for
        await self._send_stream(StreamResponse(events(), sub.close, done_marker=None))
