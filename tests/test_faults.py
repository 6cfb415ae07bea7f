"""Faults: model files that go bad while listed, ids and names that try to leave their
folders, and a server shut down in the middle of a generation."""

from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path

import httpx
import pytest
from conftest import EOS_ID, MODEL, JupyterServer

pytestmark = pytest.mark.timeout(900)

LONG_IDS = {
    "traversal": "../../outside/evil",
    "absolute": None,
    "etc": "/etc/passwd",
    "nul": "a\x00b",
    "long": "x" * 100_000,
}


@pytest.fixture(scope="module")
def fault_root(tmp_path_factory, smollm_path):
    root = tmp_path_factory.mktemp("faults")
    victim = root / "models" / "victim" / "broken-GGUF"
    victim.mkdir(parents=True)
    shutil.copyfile(smollm_path, victim / "broken-Q4_1.gguf")
    outside = root / "outside"
    outside.mkdir()
    (outside / "evil.gguf").symlink_to(smollm_path)  # a real model outside the folder
    (outside / "secret.preset.json").write_text(
        json.dumps(
            {
                "name": "secret",
                "operation": {"fields": [{"key": "llm.prediction.temperature", "value": 0.3}]},
            }
        )
    )
    (root / "presets").mkdir()
    return root


@pytest.fixture(scope="module")
def fault_server(fault_root):
    srv = JupyterServer(
        fault_root,
        fault_root / "models",
        env={
            "JUPYTER_DATA_DIR": str(fault_root / "data"),
            "LMS_JUPYTER_PRESETS_DIR": str(fault_root / "presets"),
        },
    )
    yield srv
    srv.stop()


def chat(srv, model: str, **extra) -> httpx.Response:
    return httpx.post(
        srv.url + "lms/v1/chat/completions",
        headers=srv.headers,
        timeout=300,
        json={
            "model": model,
            "messages": [{"role": "user", "content": "Hi"}],
            "max_tokens": 2,
            **extra,
        },
    )


def still_serving(srv) -> None:
    assert httpx.get(srv.url + "lms/v1/models", headers=srv.headers, timeout=60).status_code == 200
    r = chat(srv, MODEL)
    assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] == 2, r.text


def test_model_file_truncated_garbage_or_deleted_while_listed(fault_server, fault_root):
    srv = fault_server
    path = fault_root / "models" / "victim" / "broken-GGUF" / "broken-Q4_1.gguf"
    ids = [
        m["id"]
        for m in httpx.get(srv.url + "lms/v1/models", headers=srv.headers, timeout=60).json()[
            "data"
        ]
    ]
    assert "broken" in ids and MODEL in ids

    with open(path, "r+b") as f:  # truncated: the header is intact, the weights are not
        f.truncate(path.stat().st_size // 2)
    r = chat(srv, "broken")
    error = r.json()["error"]
    assert r.status_code == 500 and error["code"] == "model_load_failed", r.text
    assert str(path) in error["message"] and "Traceback" not in r.text
    still_serving(srv)

    path.write_bytes(os.urandom(4096))  # replaced by garbage: no GGUF header at all
    r = chat(srv, "broken")
    error = r.json()["error"]
    assert r.status_code == 500 and error["code"] == "model_file_invalid", r.text
    assert str(path) in error["message"]
    v0 = httpx.get(srv.url + "lms/api/v0/models", headers=srv.headers, timeout=60)
    assert v0.status_code == 200 and "broken" not in [m["id"] for m in v0.json()["data"]]
    still_serving(srv)

    path.unlink()  # deleted
    r = chat(srv, "broken")
    error = r.json()["error"]
    assert r.status_code == 404 and error["code"] == "model_not_found", r.text
    assert str(path) in error["message"] and "removed" in error["message"]
    still_serving(srv)


def _raw_get(srv, path: str) -> bytes:
    """What the server answers to a request line too long for httpx to send."""
    import socket

    with socket.create_connection(("127.0.0.1", srv.port), timeout=60) as sock:
        try:
            sock.sendall(
                f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                f"Authorization: Bearer {srv.token}\r\n\r\n".encode()
            )
            return sock.recv(65536)
        except ConnectionError:
            return b""


def _files(root: Path) -> set[str]:
    skip = ("presets", "data", "runtime", "models")
    return {
        str(p.relative_to(root))
        for p in root.rglob("*")
        if p.relative_to(root).parts[0] not in skip and p.name != "server.log"
    }


def _quoted(value: str) -> str:
    from urllib.parse import quote

    return quote(value, safe="")


def test_ids_and_names_never_leave_their_folders(fault_server, fault_root):
    srv = fault_server
    before = _files(fault_root)
    ids = dict(LONG_IDS, absolute=str(fault_root / "outside" / "evil.gguf"))
    h = srv.headers
    with httpx.Client(timeout=120) as http:
        # model ids, wherever a request names one
        for kind, model in ids.items():
            bodies = [
                (
                    "v1/chat/completions",
                    {
                        "model": model,
                        "messages": [{"role": "user", "content": "x"}],
                        "max_tokens": 1,
                    },
                ),
                ("v1/completions", {"model": model, "prompt": "x", "max_tokens": 1}),
                ("v1/embeddings", {"model": model, "input": "x"}),
                ("api/v1/models/load", {"model": model}),
                ("api/v1/models/estimate", {"model": model}),
                ("api/v1/models/unload", {"instance_id": model}),
                (
                    "v1/chat/completions",
                    {
                        "model": MODEL,
                        "draft_model": model,
                        "messages": [{"role": "user", "content": "x"}],
                        "max_tokens": 1,
                    },
                ),
            ]
            for path, body in bodies:
                r = http.post(srv.url + "lms/" + path, json=body, headers=h)
                assert r.status_code in (400, 404), (kind, path, r.status_code, r.text[:300])
                assert len(r.text) < 10_000 and r.json()["error"]["message"]
            if kind != "long":  # 100k characters in a URL: see below
                r = http.get(srv.url + "lms/api/v0/models/" + _quoted(model), headers=h)
                assert r.status_code == 404, (kind, r.text[:300])
        # preset names become file names: they stay inside the presets folder
        for kind, name in ids.items():
            r = http.post(
                srv.url + "lms/api/v0/presets",
                headers=h,
                json={"name": name, "settings": {"temperature": 0.5}},
            )
            if kind in ("nul", "long"):
                assert r.status_code == 400 and r.json()["error"]["param"] == "name", r.text
            else:
                assert r.status_code == 200, r.text
        for name in (
            "../outside/secret",
            "..%2Foutside%2Fsecret",
            "../../outside/secret",
            str(fault_root / "outside" / "secret"),
            "\x00",
            "x" * 30_000,
        ):
            for method in ("GET", "DELETE"):
                r = http.request(method, srv.url + "lms/api/v0/presets/" + _quoted(name), headers=h)
                assert r.status_code in (400, 404), (name[:40], method, r.text[:200])
        # token ids and download job ids
        for token_id in (
            "../api_tokens.json",
            "../../outside/secret.preset.json",
            str(fault_root / "data"),
            "\x00",
            "x" * 30_000,
        ):
            r = http.delete(srv.url + "lms/api/v1/tokens/" + _quoted(token_id), headers=h)
            assert r.status_code == 404 and r.json()["error"]["code"] == "token_not_found"
            r = http.get(
                srv.url + "lms/api/v1/models/download/status/" + _quoted(token_id), headers=h
            )
            assert r.status_code == 404, r.text[:200]
        # a 100k-character id in a URL is past Tornado's header limit: the connection is
        # refused before any handler runs, and the server goes on
        answer = _raw_get(srv, f"{srv.base_url}lms/api/v0/models/{'x' * 100_000}")
        assert answer == b"" or answer.split(b" ", 2)[1].startswith(b"4"), answer[:200]
    presets = {p.name for p in (fault_root / "presets").iterdir()}
    assert all(p.endswith(".preset.json") and "/" not in p for p in presets)
    assert (fault_root / "outside" / "secret.preset.json").exists()
    assert _files(fault_root) == before  # nothing written or removed outside the folders
    still_serving(srv)


def _children(pid: int) -> set[int]:
    out = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                out.add(int(entry.name))
    return out


def test_shutdown_mid_generation_ends_streams_cleanly_and_a_restart_serves(tmp_path):
    (tmp_path / "models").mkdir()
    srv = JupyterServer(tmp_path, tmp_path / "models")
    try:
        body = {
            "model": MODEL,
            "messages": [{"role": "user", "content": "Count to 1000"}],
            "max_tokens": 3000,
            "logit_bias": {str(EOS_ID): -100},
            "stream": True,
        }
        events = []
        with httpx.stream(
            "POST", srv.url + "lms/v1/chat/completions", headers=srv.headers, json=body, timeout=300
        ) as response:
            assert response.status_code == 200
            lines = response.iter_lines()
            for line in lines:
                if line.startswith("data: ") and '"content"' in line:
                    break  # generating
            children = _children(srv.proc.pid)
            srv.proc.send_signal(signal.SIGTERM)
            events = [line[6:] for line in lines if line.startswith("data: ")]
        assert events[-1] == "[DONE]", events[-3:]
        error = json.loads(events[-2])["error"]
        assert error["code"] == "model_unloaded", error
        assert srv.proc.wait(timeout=120) == 0
        assert not any(Path(f"/proc/{pid}").exists() for pid in children)
        log = srv.log_path.read_text()
        assert "stopped 1 model worker(s)" in log and "still running" not in log
    finally:
        srv.stop()
    again = JupyterServer(tmp_path, tmp_path / "models")
    try:
        still_serving(again)
    finally:
        again.stop()
