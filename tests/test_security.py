"""Scoped API tokens, authentication on every route, XSRF, CORS, body and queue limits,
and the ``lms-jupyter token`` commands, on real servers with real clients."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from conftest import EOS_ID, MODEL, JupyterServer
from openai import OpenAI

from lms_jupyter.server.openapi import openapi_path
from lms_jupyter.server.routes import route_table

pytestmark = pytest.mark.timeout(900)

AUTHORIZER = '''
from jupyter_server.auth import Authorizer


class ReadOnlyTokens(Authorizer):
    """Scoped API tokens may read but not write: proves @authorized sees them."""

    def is_authorized(self, handler, user, action, resource):
        if user.username.startswith("lms-api-token:"):
            return action == "read"
        return True
'''


def _env(root: Path) -> dict:
    return {"JUPYTER_DATA_DIR": str(root / "data"), "JUPYTER_RUNTIME_DIR": str(root / "runtime")}


@pytest.fixture(scope="module")
def sec_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("sec")
    (root / "models").mkdir()
    srv = JupyterServer(root, root / "models", env=_env(root))
    srv.root = root
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def strict_server(tmp_path_factory):
    """allow_origin set, an Authorizer that keeps scoped tokens read-only, a 1 MiB body
    limit and a queue bound of 2."""
    root = tmp_path_factory.mktemp("strict")
    (root / "models").mkdir()
    (root / "pylib").mkdir()
    (root / "pylib" / "lms_test_authorizer.py").write_text(AUTHORIZER)
    path = os.pathsep.join([str(root / "pylib"), os.environ.get("PYTHONPATH", "")])
    srv = JupyterServer(
        root,
        root / "models",
        [
            "--ServerApp.allow_origin=http://ok.example",
            "--ServerApp.authorizer_class=lms_test_authorizer.ReadOnlyTokens",
            "--LMSJupyterApp.max_request_mb=1",
            "--ModelManager.max_queued_requests=2",
        ],
        env={**_env(root), "PYTHONPATH": path},
    )
    yield srv
    srv.stop()


def create_token(srv, name="app", **extra) -> dict:
    r = httpx.post(
        srv.url + "lms/api/v1/tokens", json={"name": name, **extra}, headers=srv.headers, timeout=30
    )
    assert r.status_code == 200, r.text
    return r.json()


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def every_lms_request(srv) -> list[tuple[str, str]]:
    """(method, url) for every route of the table, the log stream and an unknown path."""
    out = []
    for pattern, endpoints in route_table():
        path = openapi_path(pattern).replace("{model_id}", MODEL)
        for name in ("name", "job_id", "token_id"):
            path = path.replace("{" + name + "}", "x")
        out += [(method.upper(), srv.url + path.lstrip("/")) for method in endpoints]
    out.append(("GET", srv.url + "lms/api/v0/logs/stream"))
    out.append(("GET", srv.url + "lms/api/v0/events"))
    out.append(("GET", srv.url + "lms/no/such/route"))
    return out


# -- scoped tokens ---------------------------------------------------------------------------


def test_scoped_token_drives_the_openai_client_and_is_stored_hashed(sec_server):
    srv = sec_server
    created = create_token(srv, "openai app", expires_in=3600)
    assert set(created) >= {"id", "name", "token", "created_at", "expires_at"}
    assert created["expires_at"] is not None
    client = OpenAI(base_url=srv.api_url, api_key=created["token"], max_retries=0, timeout=120)
    assert MODEL in [m.id for m in client.models.list().data]
    answer = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Hi"}], max_tokens=3
    )
    assert answer.usage.completion_tokens == 3
    chunks = list(
        client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "Hi"}], max_tokens=3, stream=True
        )
    )
    assert chunks and chunks[-1].choices[0].finish_reason == "length"

    listing = httpx.get(srv.url + "lms/api/v1/tokens", headers=srv.headers, timeout=30)
    row = next(r for r in listing.json()["data"] if r["id"] == created["id"])
    assert "token" not in row and created["token"].split(":")[1] not in listing.text
    assert row["name"] == "openai app" and row["last_used_at"] is not None
    store = srv.root / "data" / "lms_jupyter" / "api_tokens.json"
    assert stat.S_IMODE(store.stat().st_mode) == 0o600
    assert created["token"].split(":")[1] not in store.read_text()


def test_scoped_token_is_refused_by_every_other_jupyter_route(sec_server):
    srv = sec_server
    scoped = bearer(create_token(srv, "not for jupyter")["token"])
    requests = [
        ("GET", "api/contents"),
        ("PUT", "api/contents/x.txt"),
        ("GET", "api/kernels"),
        ("POST", "api/kernels"),
        ("GET", "api/sessions"),
        ("POST", "api/sessions"),
        ("GET", "api/terminals"),
        ("POST", "api/terminals"),
        ("GET", "api/status"),
        ("GET", "api/me"),
        ("GET", "api/kernelspecs"),
        ("GET", "api/config/notebook"),
        ("GET", "api/events/subscribe"),
        ("GET", "lab"),
    ]
    with httpx.Client(timeout=30) as http:
        for method, path in requests:
            r = http.request(
                method,
                srv.url + path,
                headers=scoped,
                json={} if method in ("POST", "PUT") else None,
            )
            assert r.status_code in (401, 403) or (
                r.status_code in (302, 404) and "login" in r.headers.get("location", "login")
            ), (method, path, r.status_code, r.text[:200])
            assert "username-" not in r.headers.get("set-cookie", "")
        assert http.get(srv.url + "api/contents", headers=srv.headers).status_code == 200
        # no login cookie comes back from /lms for a scoped token either
        r = http.get(srv.url + "lms/v1/models", headers=scoped)
        assert r.status_code == 200 and "set-cookie" not in r.headers


def test_scoped_token_cannot_manage_tokens(sec_server):
    srv = sec_server
    mine = create_token(srv, "limited")
    url = srv.url + "lms/api/v1/tokens"
    for method, target, body in [
        ("GET", url, None),
        ("POST", url, {"name": "escalate"}),
        ("DELETE", f"{url}/{mine['id']}", None),
    ]:
        r = httpx.request(method, target, json=body, headers=bearer(mine["token"]), timeout=30)
        assert r.status_code == 403, r.text
        assert r.json()["error"]["code"] == "insufficient_permissions"
    names = [t["name"] for t in httpx.get(url, headers=srv.headers, timeout=30).json()["data"]]
    assert "escalate" not in names and "limited" in names


def test_unknown_revoked_and_expired_tokens_get_401_on_every_lms_route(sec_server):
    srv = sec_server
    revoked = create_token(srv, "to revoke")
    r = httpx.delete(
        srv.url + f"lms/api/v1/tokens/{revoked['id']}", headers=srv.headers, timeout=30
    )
    assert r.json() == {
        "id": revoked["id"],
        "object": "api_token",
        "name": "to revoke",
        "deleted": True,
    }
    expired = create_token(srv, "to expire")
    store = srv.root / "data" / "lms_jupyter" / "api_tokens.json"
    data = json.loads(store.read_text())  # a token whose time is up (as if days passed)
    for item in data["tokens"]:
        if item["id"] == expired["id"]:
            item["expires_at"] = time.time() - 1
    store.write_text(json.dumps(data))
    bad = {
        "revoked": revoked["token"],
        "expired": expired["token"],
        "unknown": "sk-lmj-0123456789abcdef:" + "A" * 43,
        "garbage": "not-a-token",
        "none": None,
    }
    with httpx.Client(timeout=30) as http:
        for method, url in every_lms_request(srv):
            for kind, token in bad.items():
                headers = bearer(token) if token else {}
                r = http.request(
                    method, url, headers=headers, content=b"{}" if method == "POST" else None
                )
                assert r.status_code == 401, (kind, method, url, r.status_code, r.text[:200])
                error = r.json()["error"]
                if "/v1/messages" in url:  # the Anthropic API answers in its own shape
                    assert error["type"] == "authentication_error" and error["message"]
                    continue
                assert error["code"] == "invalid_api_key" and error["message"], (kind, url)


def test_a_wrong_bearer_token_is_401_even_with_a_login_cookie(sec_server):
    srv = sec_server
    with httpx.Client(timeout=30) as http:
        r = http.get(srv.url + f"api/status?token={srv.token}")  # Jupyter sets its cookie
        assert r.status_code == 200 and any(c.startswith("username-") for c in http.cookies)
        assert http.get(srv.url + "lms/v1/models").status_code == 200  # the cookie alone
        r = http.get(srv.url + "lms/v1/models", headers=bearer("wrong"))
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
        # a cookie-authenticated POST needs Jupyter's XSRF token, a bearer one does not
        r = http.post(srv.url + "lms/api/v1/models/estimate", json={"model": MODEL})
        assert r.status_code == 403, r.text
        http.cookies.set("_xsrf", "double-submit-xsrf")  # Tornado compares cookie and header
        r = http.post(
            srv.url + "lms/api/v1/models/estimate",
            json={"model": MODEL},
            headers={"X-XSRFToken": "double-submit-xsrf"},
        )
        assert r.status_code == 200, r.text
        scoped = create_token(srv, "xsrf")["token"]
        r = httpx.post(
            srv.url + "lms/api/v1/models/estimate",
            json={"model": MODEL},
            headers=bearer(scoped),
            timeout=30,
        )
        assert r.status_code == 200, r.text


# -- authorizer and CORS --------------------------------------------------------------------


def test_jupyters_authorizer_sees_scoped_users(strict_server):
    srv = strict_server
    scoped = bearer(create_token(srv, "read only")["token"])
    estimate = srv.url + "lms/api/v1/models/estimate"
    assert httpx.get(srv.url + "lms/v1/models", headers=scoped, timeout=30).status_code == 200
    r = httpx.post(estimate, json={"model": MODEL}, headers=scoped, timeout=30)
    assert r.status_code == 403 and r.json()["error"]["message"], r.text
    assert (
        httpx.post(estimate, json={"model": MODEL}, headers=srv.headers, timeout=30).status_code
        == 200
    )


def _cors(response) -> dict:
    return {
        k.lower(): v for k, v in response.headers.items() if k.lower().startswith("access-control-")
    }


@pytest.mark.parametrize("which", ["default", "allow_origin"])
def test_cors_headers_are_jupyters_own(sec_server, strict_server, which):
    srv = sec_server if which == "default" else strict_server
    scoped = create_token(srv, "cors")["token"]
    http = httpx  # one client per request: no login cookie is carried between them
    for origin in ("http://evil.example", "http://ok.example"):
        for credential in (srv.token, scoped, None):
            headers = {"Origin": origin, **(bearer(credential) if credential else {})}
            ours = http.get(srv.url + "lms/v1/models", headers=headers, timeout=30)
            # what Jupyter's own API grants the same request (the Jupyter token there:
            # a scoped token is token-authenticated on /lms only)
            jupyter_headers = {"Origin": origin, **(bearer(srv.token) if credential else {})}
            theirs = http.get(srv.url + "api/status", headers=jupyter_headers, timeout=30)
            assert _cors(ours) == _cors(theirs), (which, origin, credential is None)
            if which == "allow_origin" and credential:
                assert _cors(ours)["access-control-allow-origin"] == "http://ok.example"
            if credential is None:
                assert "access-control-allow-origin" not in _cors(ours)
        preflight = {
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type",
        }
        ours = http.options(srv.url + "lms/v1/chat/completions", headers=preflight, timeout=30)
        theirs = http.options(srv.url + "api/contents", headers=preflight, timeout=30)
        assert (ours.status_code, _cors(ours)) == (theirs.status_code, _cors(theirs))


# -- limits ---------------------------------------------------------------------------------


def _raw_request(srv, head: str, body_parts=(), read_timeout=30.0) -> bytes:
    with socket.create_connection(("127.0.0.1", srv.port), timeout=read_timeout) as sock:
        sock.sendall(head.encode())
        for part in body_parts:
            sock.sendall(part)
        received = b""
        while b"\r\n\r\n" not in received or not received.rstrip().endswith(b"}"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
        return received


def test_a_body_over_the_limit_is_413_before_it_is_read(strict_server):
    srv = strict_server
    path = f"{srv.base_url}lms/v1/chat/completions"
    # Content-Length over the limit and no body sent at all: the answer cannot wait for it
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{srv.port}\r\n"
        f"Authorization: Bearer {srv.token}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {3 * 2**20}\r\n\r\n"
    )
    answer = _raw_request(srv, head)
    status, _, rest = answer.partition(b"\r\n")
    assert b" 413 " in status, answer[:300]
    error = json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"]
    assert error["code"] == "request_too_large" and "1048576" in error["message"]
    # chunked, no length announced: cut off once it passes the limit
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{srv.port}\r\n"
        f"Authorization: Bearer {srv.token}\r\nContent-Type: application/json\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
    )
    piece = b" " * 65536
    parts = [b"%x\r\n%s\r\n" % (len(piece), piece)] * 17  # 1 MiB + 64 KiB
    answer = _raw_request(srv, head, parts)
    assert b" 413 " in answer.partition(b"\r\n")[0], answer[:300]
    # under the limit, a body goes through (an unknown model: parsed, then 404)
    r = httpx.post(
        srv.url + "lms/v1/chat/completions",
        headers=srv.headers,
        timeout=30,
        json={"model": "no-such-model", "messages": [{"role": "user", "content": "x" * 900_000}]},
    )
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"


def test_batch_uploads_have_the_file_limit_not_the_body_limit(strict_server):
    """/v1/files takes batch input files up to OpenAI's 200 MB, whatever max_request_mb says
    (1 MiB here); the multipart body is parsed from the streamed-in bytes."""
    srv = strict_server
    line = json.dumps(
        {
            "custom_id": "row-{}",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {
                "model": MODEL,
                "max_tokens": 1,
                "messages": [{"role": "user", "content": "x" * 1000}],
            },
        }
    )
    content = "".join(line.replace("row-{}", f"row-{i}") + "\n" for i in range(1500))
    assert len(content) > 1.4 * 2**20
    client = OpenAI(base_url=srv.api_url, api_key=srv.token, max_retries=0, timeout=60)
    uploaded = client.files.create(file=("big.jsonl", content.encode()), purpose="batch")
    assert uploaded.bytes == len(content) and uploaded.purpose == "batch"
    assert client.files.content(uploaded.id).content == content.encode()
    client.files.delete(uploaded.id)


def test_full_queue_is_503_with_retry_after_and_queued_work_completes(strict_server):
    srv = strict_server
    client = OpenAI(base_url=srv.api_url, api_key=srv.token, max_retries=0, timeout=300)
    long = dict(
        model=MODEL,
        messages=[{"role": "user", "content": "Count"}],
        logit_bias={str(EOS_ID): -100},
        temperature=0,
    )
    results: dict[int, object] = {}

    def run(i: int, max_tokens: int) -> None:
        stream = client.chat.completions.create(
            **long, max_tokens=max_tokens, stream=True, stream_options={"include_usage": True}
        )
        results[i] = [c for c in stream]

    # both long enough to still run when the third arrives (they share the model's slots)
    threads = [
        threading.Thread(target=run, args=(0, 120)),
        threading.Thread(target=run, args=(1, 60)),
    ]
    threads[0].start()
    _wait_for(lambda: _ps(srv) and _ps(srv)[0]["queued"] == 1)
    threads[1].start()
    _wait_for(lambda: _ps(srv)[0]["queued"] == 2)
    r = httpx.post(
        srv.url + "lms/v1/chat/completions",
        headers=srv.headers,
        timeout=60,
        json={**long, "max_tokens": 2},
    )
    assert r.status_code == 503, r.text
    assert r.headers["Retry-After"].isdigit()
    assert r.json()["error"]["code"] == "queue_full"
    for thread in threads:
        thread.join(600)
    assert [results[0][-1].usage.completion_tokens, results[1][-1].usage.completion_tokens] == [
        120,
        60,
    ]
    _wait_for(lambda: _ps(srv)[0]["queued"] == 0)


def _ps(srv) -> list:
    return httpx.get(srv.url + "lms/api/v0/ps", headers=srv.headers, timeout=30).json()["data"]


def _wait_for(condition, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.02)


# -- the CLI ----------------------------------------------------------------------------------


def _cli(srv, *args: str, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, **_env(srv.root), "JUPYTER_PLATFORM_DIRS": "1", **(env_extra or {})}
    env.pop("JUPYTER_TOKEN", None)
    return subprocess.run(
        [sys.executable, "-m", "lms_jupyter.cli", "token", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_cli_token_create_ls_revoke_against_the_running_server(sec_server):
    srv = sec_server
    made = _cli(srv, "create", "cli app", "--expires-in", "12h")  # found in runtime files
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    assert token.startswith("sk-lmj-") and "shown only now" in made.stderr
    assert httpx.get(srv.api_url + "/models", headers=bearer(token), timeout=30).status_code == 200
    listed = _cli(srv, "ls")
    assert listed.returncode == 0 and "cli app" in listed.stdout
    assert token.split(":")[1] not in listed.stdout
    rows = json.loads(_cli(srv, "ls", "--json").stdout)
    row = next(r for r in rows if r["name"] == "cli app")
    assert row["expires_at"] is not None
    explicit = _cli(srv, "revoke", row["id"], "--url", srv.url, "--token", srv.token)
    assert explicit.returncode == 0 and f"({row['id']})" in explicit.stdout, explicit.stderr
    assert httpx.get(srv.api_url + "/models", headers=bearer(token), timeout=30).status_code == 401
    again = _cli(srv, "revoke", row["id"])
    assert again.returncode == 1 and "No API token" in again.stderr
    wrong = _cli(srv, "ls", "--url", srv.url, "--token", "wrong")
    assert wrong.returncode == 1 and "--token" in wrong.stderr
    nobody = _cli(srv, "ls", env_extra={"JUPYTER_RUNTIME_DIR": str(srv.root / "empty")})
    assert nobody.returncode == 1 and "No running Jupyter server" in nobody.stderr
