"""Soak: 200 mixed requests from 8 clients at once against one real server.

Chats and streams each ask for a distinctive answer that a grammar makes the model write
(the JSON string of their own tag), so every answer can be matched to its own request;
embeddings are compared with reference vectors of the same text; abandoned streams close
after their first chunk; listings and load/unload of extra instances run in between.
Afterwards nothing may be lost or duplicated, the model must be idle with an empty queue,
the extra instances gone, and the server's threads, open file descriptors and resident
memory back within a small margin of where they were after a warm-up. The figures are
printed (``-s``); they are not timed assertions.
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
from pathlib import Path

import httpx
import pytest
from conftest import MODEL, JupyterServer

pytestmark = pytest.mark.timeout(900)

CLIENTS = 8
PER_CLIENT = 25
TEXTS = [
    "a quiet harbour at dawn",
    "the compiler rejected the patch",
    "ripe figs",
    "seven bridges of Königsberg",
]
# one plan row per request of a client: the mix of the 200
PLAN = [
    "chat",
    "stream",
    "chat",
    "listing",
    "embed",
    "stream",
    "chat",
    "abandon",
    "chat",
    "stream",
    "embed",
    "chat",
    "load_unload",
    "stream",
    "chat",
    "listing",
    "abandon",
    "chat",
    "embed",
    "stream",
    "chat",
    "stream",
    "listing",
    "chat",
    "embed",
]
assert len(PLAN) == PER_CLIENT


def _schema(tag: str) -> dict:
    """The answer must be the JSON string of the request's own tag (a few tokens)."""
    return {"type": "json_schema", "json_schema": {"name": "tag", "schema": {"enum": [tag]}}}


def _process_figures(pid: int) -> dict:
    status = Path(f"/proc/{pid}/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return {
        "threads": int(fields["Threads"]),
        "fds": len(os.listdir(f"/proc/{pid}/fd")),
        "rss_mb": int(fields["VmRSS"].split()[0]) / 1024,
    }


class Soak:
    def __init__(self, srv):
        self.srv = srv
        self.http = httpx.Client(
            headers=srv.headers, timeout=600, limits=httpx.Limits(max_connections=CLIENTS * 2)
        )
        self.references: dict[str, list[float]] = {}
        self.results: dict[str, str] = {}  # tag -> what was checked
        self.errors: list[str] = []
        self.lock = threading.Lock()

    def url(self, path: str) -> str:
        return self.srv.url + "lms/" + path

    def run(self, kind: str, tag: str, client: int) -> None:
        try:
            getattr(self, kind)(tag, client)
            with self.lock:
                assert tag not in self.results, f"{tag} answered twice"
                self.results[tag] = kind
        except Exception as exc:  # noqa: BLE001 - collected and reported together
            with self.lock:
                self.errors.append(f"{tag} {kind}: {exc!r}"[:500])

    def chat(self, tag: str, client: int) -> None:
        r = self.http.post(
            self.url("v1/chat/completions"),
            json={
                "model": MODEL,
                "messages": [{"role": "user", "content": f"Say {tag}"}],
                "response_format": _schema(tag),
                "max_tokens": 16,
            },
        )
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["model"] == MODEL and body["choices"][0]["finish_reason"] == "stop"
        assert json.loads(body["choices"][0]["message"]["content"]) == tag

    def stream(self, tag: str, client: int) -> None:
        ids, text, done = set(), [], False
        with self.http.stream(
            "POST",
            self.url("v1/chat/completions"),
            json={
                "model": MODEL,
                "messages": [{"role": "user", "content": f"Say {tag}"}],
                "response_format": _schema(tag),
                "max_tokens": 16,
                "stream": True,
            },
        ) as r:
            assert r.status_code == 200
            for line in r.iter_lines():
                if not line.startswith("data: "):
                    continue
                if line == "data: [DONE]":
                    done = True
                    continue
                chunk = json.loads(line[6:])
                assert "error" not in chunk, chunk
                ids.add(chunk["id"])
                assert chunk["model"] == MODEL
                for choice in chunk["choices"]:
                    text.append(choice["delta"].get("content") or "")
        assert done and len(ids) == 1
        assert json.loads("".join(text)) == tag

    def abandon(self, tag: str, client: int) -> None:
        with self.http.stream(
            "POST",
            self.url("v1/chat/completions"),
            json={
                "model": MODEL,
                "messages": [{"role": "user", "content": "Tell a long story"}],
                "max_tokens": 400,
                "stream": True,
            },
        ) as r:
            assert r.status_code == 200
            for line in r.iter_lines():
                if line.startswith("data: "):
                    break  # and leave: the server must stop this generation

    def embed(self, tag: str, client: int) -> None:
        text = TEXTS[(client + len(tag)) % len(TEXTS)]
        r = self.http.post(self.url("v1/embeddings"), json={"model": MODEL, "input": text})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["model"] == MODEL and len(body["data"]) == 1
        vector = body["data"][0]["embedding"]
        reference = self.references[text]
        assert max(abs(a - b) for a, b in zip(vector, reference, strict=False)) < 1e-3

    def listing(self, tag: str, client: int) -> None:
        models = self.http.get(self.url("v1/models"))
        assert models.status_code == 200 and MODEL in [m["id"] for m in models.json()["data"]]
        assert self.http.get(self.url("api/v0/ps")).status_code == 200

    def load_unload(self, tag: str, client: int) -> None:
        identifier = f"soak-{tag}"
        r = self.http.post(
            self.url("api/v1/models/load"),
            json={"model": MODEL, "identifier": identifier, "context_length": 256, "force": True},
        )
        assert r.status_code == 200 and r.json()["instance_id"] == identifier, r.text
        r = self.http.post(self.url("api/v1/models/unload"), json={"instance_id": identifier})
        assert r.status_code == 200 and r.json()["instance_id"] == identifier, r.text

    def wave(self, plan: list[list[str]], prefix: str) -> float:
        started = time.perf_counter()
        threads = [
            threading.Thread(
                target=lambda c=c: [
                    self.run(kind, f"{prefix}{c}x{j}", c) for j, kind in enumerate(plan[c])
                ]
            )
            for c in range(len(plan))
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return time.perf_counter() - started

    def idle(self) -> list[dict]:
        deadline = time.monotonic() + 120
        while True:
            rows = self.http.get(self.url("api/v0/ps")).json()["data"]
            if all(r["status"] == "idle" and r["queued"] == 0 for r in rows):
                return rows
            assert time.monotonic() < deadline, rows
            time.sleep(0.05)


@pytest.fixture(scope="module")
def soak_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("soak")
    (root / "models").mkdir()
    srv = JupyterServer(root, root / "models", env={"JUPYTER_DATA_DIR": str(root / "data")})
    yield srv
    srv.stop()


def test_soak_200_mixed_requests_from_8_clients(soak_server):
    srv = soak_server
    soak = Soak(srv)
    for text in TEXTS:
        r = soak.http.post(soak.url("v1/embeddings"), json={"model": MODEL, "input": text})
        soak.references[text] = r.json()["data"][0]["embedding"]
    # warm-up: every kind once, 8 clients at once (thread pools and caches fill up)
    kinds = ["chat", "stream", "abandon", "embed", "listing", "load_unload", "chat", "stream"]
    soak.wave([[kinds[c]] for c in range(CLIENTS)], "w")
    soak.idle()
    assert not soak.errors, soak.errors
    before = _process_figures(srv.proc.pid)

    plan = [PLAN[c:] + PLAN[:c] for c in range(CLIENTS)]  # clients out of step
    took = soak.wave(plan, "s")
    rows = soak.idle()
    assert not soak.errors, "\n".join(soak.errors[:20])
    soak_tags = {t: k for t, k in soak.results.items() if t.startswith("s")}
    assert len(soak_tags) == CLIENTS * PER_CLIENT  # none lost, none twice (checked in run)
    assert [r["identifier"] for r in rows] == [MODEL]  # the extra instances are gone

    settle = time.monotonic() + 30  # threads that finished their work exit
    after = _process_figures(srv.proc.pid)
    while after["threads"] > before["threads"] + 2 and time.monotonic() < settle:
        time.sleep(0.1)
        after = _process_figures(srv.proc.pid)
    counts = {kind: list(soak_tags.values()).count(kind) for kind in sorted(set(PLAN))}
    print(
        f"\nsoak: {len(soak_tags)} requests from {CLIENTS} clients in {took:.1f} s "
        f"({len(soak_tags) / took:.1f}/s); mix {counts}"
    )
    print(
        f"server process: threads {before['threads']} -> {after['threads']}, "
        f"open fds {before['fds']} -> {after['fds']}, RSS {before['rss_mb']:.0f} MiB -> "
        f"{after['rss_mb']:.0f} MiB"
    )
    assert after["threads"] <= before["threads"] + 2
    assert after["fds"] <= before["fds"] + 8
    assert after["rss_mb"] <= before["rss_mb"] + max(96.0, 0.15 * before["rss_mb"])
    assert not math.isnan(after["rss_mb"])
    soak.http.close()
