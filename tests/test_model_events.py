"""``GET {base}lms/api/v0/events``: model events over SSE (the sidebar's and
``ps --watch``'s push feed). The event rules on their own (``diff_rows``), then a real
server: the snapshot first, then loaded / status / queue / unloaded events as a load, a
chat request and an unload happen over HTTP, for two readers at once."""

from __future__ import annotations

import json
import queue
import threading
import time

import httpx
import pytest
from conftest import EOS_ID, MODEL

from lms_jupyter.api.lmstudio.instance_events import diff_rows
from lms_jupyter.server.base import LMSHandler
from lms_jupyter.sse import SSEParser

pytestmark = pytest.mark.timeout(240)


# -- the rules -----------------------------------------------------------------------------
def _row(identifier="m", status="idle", queued=0, **extra):
    return {
        "identifier": identifier,
        "modelKey": "key",
        "status": status,
        "queued": queued,
        **extra,
    }


def _kinds(old, new):
    return [(e["kind"], e["identifier"]) for e in diff_rows(old, new)]


def test_diff_rows_names_each_change():
    loading = {"m": _row(status="loading", loadProgress=0.1)}
    assert _kinds({}, loading) == [("loading", "m")]
    assert _kinds(loading, {"m": _row(status="loading", loadProgress=0.5)}) == [("progress", "m")]
    assert _kinds(loading, loading) == []
    idle = {"m": _row()}
    assert _kinds(loading, idle) == [("loaded", "m")]
    assert _kinds({}, idle) == [("loaded", "m")]
    busy = {"m": _row(status="generating", queued=1)}
    assert _kinds(idle, busy) == [("status", "m"), ("queue", "m")]
    assert _kinds(busy, {"m": _row(status="generating", queued=2)}) == [("queue", "m")]
    assert _kinds(busy, {"m": _row(status="crashed", queued=0)}) == [
        ("crashed", "m"),
        ("queue", "m"),
    ]
    assert _kinds(idle, {}) == [("unloaded", "m")]
    failed = diff_rows(loading, {})
    assert failed[0]["wasLoading"] is True and "row" not in failed[0]
    # every event but unloaded carries the row, so a client replaces its row by identifier
    assert diff_rows(idle, busy)[0]["row"] == busy["m"]
    # the TTL countdown alone is not a change
    assert _kinds({"m": _row(ttlRemainingMs=5000)}, {"m": _row(ttlRemainingMs=4000)}) == []


def test_heartbeat_is_an_sse_comment():
    assert LMSHandler.format_event({"__comment__": "keep-alive"}) == ": keep-alive\n\n"
    assert (
        LMSHandler.format_event({"__event__": "loaded", "kind": "loaded"})
        == 'event: loaded\ndata: {"kind": "loaded"}\n\n'
    )


# -- over HTTP -----------------------------------------------------------------------------
class EventReader:
    """Reads the event stream on a thread: (event name, JSON data) pairs into a queue."""

    def __init__(self, server):
        self.events: queue.Queue = queue.Queue()
        self.seen: list[tuple[str, dict]] = []
        self.status: int | None = None
        self._client = httpx.Client(timeout=httpx.Timeout(10, read=None))
        self._server = server
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        assert self._ready.wait(30), "the event stream did not answer"

    def _run(self):
        url = self._server.url + "lms/api/v0/events"
        try:
            with self._client.stream("GET", url, headers=self._server.headers) as response:
                self.status = response.status_code
                self.content_type = response.headers.get("content-type", "")
                self._ready.set()
                parser = SSEParser()
                for line in response.iter_lines():
                    event = parser.line(line)
                    if event is not None:
                        self.events.put((event.name, event.json()))
        except httpx.HTTPError:
            pass
        finally:
            self._ready.set()

    def next(self, timeout=60.0) -> tuple[str, dict]:
        item = self.events.get(timeout=timeout)
        self.seen.append(item)
        return item

    def until(self, predicate, what: str, timeout=60.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {what} event; saw {[n for n, _ in self.seen]}")
            try:
                name, data = self.next(left)
            except queue.Empty:
                continue
            if predicate(name, data):
                return data

    def close(self):
        self._client.close()


def _ps(server) -> list[dict]:
    r = httpx.get(server.url + "lms/api/v0/ps", headers=server.headers, timeout=10)
    r.raise_for_status()
    return r.json()["data"]


def test_events_route_needs_authentication(server):
    r = httpx.get(server.url + "lms/api/v0/events", timeout=10)
    assert r.status_code in (401, 403)
    assert "error" in r.json()


def test_snapshot_then_load_status_queue_unload(server):
    first = EventReader(server)
    try:
        assert first.status == 200 and first.content_type.startswith("text/event-stream")
        name, snapshot = first.next()
        assert name == "snapshot" and snapshot["kind"] == "snapshot"
        assert [r["identifier"] for r in snapshot["data"]] == [r["identifier"] for r in _ps(server)]

        r = httpx.post(
            server.url + "lms/api/v1/models/load",
            headers=server.headers,
            json={"model": MODEL},
            timeout=120,
        )
        assert r.status_code == 200, r.text
        instance = r.json()["instance_id"]
        loaded = first.until(lambda n, d: n == "loaded" and d["identifier"] == instance, "loaded")
        assert loaded["modelKey"] == MODEL
        assert loaded["row"]["status"] == "idle" and loaded["row"]["queued"] == 0
        assert loaded["row"]["displayName"]

        # a second reader's snapshot already has the instance, as ps does
        second = EventReader(server)
        try:
            name, snapshot = second.next()
            assert name == "snapshot"
            rows = {r["identifier"]: r for r in snapshot["data"]}
            assert rows[instance]["status"] == "idle"

            # a long streamed answer (EOS banned): the status and queue change, both see it
            body = {
                "model": instance,
                "messages": [{"role": "user", "content": "Tell a story."}],
                "max_tokens": 400,
                "logit_bias": {str(EOS_ID): -100},
                "stream": True,
            }
            with (
                httpx.Client(timeout=120) as chat,
                chat.stream(
                    "POST",
                    server.url + "lms/v1/chat/completions",
                    headers=server.headers,
                    json=body,
                ) as answer,
            ):
                assert answer.status_code == 200
                lines = answer.iter_lines()
                for reader in (first, second):
                    busy = reader.until(
                        lambda n, d: (
                            n in ("status", "queue")
                            and d["row"]["status"] in ("processingPrompt", "generating")
                        ),
                        "busy status",
                    )
                    assert busy["row"]["queued"] >= 1
                assert next(lines)  # still streaming: stop it by closing the stream
            for reader in (first, second):
                idle = reader.until(
                    lambda n, d: (
                        n in ("status", "queue")
                        and d["row"]["status"] == "idle"
                        and d["row"]["queued"] == 0
                    ),
                    "idle again",
                )
                assert idle["identifier"] == instance
        finally:
            second.close()

        r = httpx.post(
            server.url + "lms/api/v1/models/unload",
            headers=server.headers,
            json={"instance_id": instance},
            timeout=60,
        )
        assert r.status_code == 200, r.text
        unloaded = first.until(lambda n, d: n == "unloaded", "unloaded")
        assert unloaded["identifier"] == instance and unloaded["wasLoading"] is False
        assert "row" not in unloaded
        names = [n for n, _ in first.seen]
        assert names.index("loaded") < names.index("unloaded")
        assert set(names) <= {
            "snapshot",
            "loading",
            "progress",
            "loaded",
            "status",
            "queue",
            "unloaded",
        }, names
        for _, data in first.seen:
            json.dumps(data)  # plain JSON throughout
    finally:
        first.close()


# -- ps --watch ----------------------------------------------------------------------------
def test_event_lines_read_like_ps():
    from lms_jupyter.cli.ps_watch import event_line

    row = {"identifier": "m", "status": "generating", "queued": 2}
    assert event_line({"kind": "queue", "identifier": "m", "row": row, "time": 0}).endswith(
        "queue     m  generating, queued 2"
    )
    loading = {
        "kind": "progress",
        "identifier": "m",
        "time": 0,
        "row": {"status": "loading", "loadProgress": 0.42},
    }
    assert event_line(loading).endswith("progress  m  loading 42%")
    assert event_line(
        {"kind": "unloaded", "identifier": "m", "time": 0, "wasLoading": True}
    ).endswith("load ended before it finished")
    assert event_line({"kind": "snapshot", "data": [], "time": 0}).endswith("no models loaded")


def test_cli_ps_watch_follows_the_server(server):
    """``lms-jupyter ps --watch --json`` reads the server's event stream: the snapshot,
    then the load and unload made over HTTP meanwhile."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "NO_COLOR": "1"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "lms_jupyter.cli",
            "--url",
            server.url,
            "--token",
            server.token,
            "ps",
            "--watch",
            "--json",
            "--timeout",
            "90",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        lines: queue.Queue = queue.Queue()
        threading.Thread(
            target=lambda: [lines.put(line) for line in proc.stdout], daemon=True
        ).start()
        first = json.loads(lines.get(timeout=60))
        assert first["kind"] == "snapshot"
        r = httpx.post(
            server.url + "lms/api/v1/models/load",
            headers=server.headers,
            json={"model": MODEL, "identifier": "watched"},
            timeout=120,
        )
        assert r.status_code == 200, r.text
        httpx.post(
            server.url + "lms/api/v1/models/unload",
            headers=server.headers,
            json={"instance_id": "watched"},
            timeout=60,
        ).raise_for_status()
        kinds = []
        while "unloaded" not in kinds:
            event = json.loads(lines.get(timeout=60))
            if event.get("identifier") == "watched":
                kinds.append(event["kind"])
        assert "loaded" in kinds and kinds.index("loaded") < kinds.index("unloaded"), kinds
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_watch_local_wakes_on_manager_events(monkeypatch):
    """This process's watch: the manager's listener wakes the comparison, the interval
    finds the rest, and the listener is removed when the watch ends."""
    from lms_jupyter.cli import ps_watch as watch

    rows: list[dict] = []

    class Manager:
        def __init__(self):
            self.listeners: list = []

        def subscribe(self, listener):
            self.listeners.append(listener)
            return lambda: self.listeners.remove(listener)

    manager = Manager()
    monkeypatch.setattr(watch, "local_rows", lambda _manager: [dict(r) for r in rows])
    events = watch.watch_local(manager, interval=3600)  # only a wake-up can end a wait
    assert next(events)["kind"] == "snapshot"
    rows.append(_row("m"))
    got: list[dict] = []
    reader = threading.Thread(target=lambda: got.append(next(events)), daemon=True)
    reader.start()
    manager.listeners[0]("loaded", {})
    reader.join(60)
    assert got and (got[0]["kind"], got[0]["identifier"]) == ("loaded", "m")
    events.close()
    assert manager.listeners == []
