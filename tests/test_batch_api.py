"""OpenAI's Files and Batch API on a real server, driven by the ``openai`` client's
``files`` and ``batches`` resources: the round trip (chat and embeddings), bad input,
cancel, a restart in the middle of a batch, and an interactive request served while a
batch runs."""

from __future__ import annotations

import io
import json
import time

import httpx
import openai
import pytest
from conftest import MODEL, JupyterServer
from openai import OpenAI

pytestmark = pytest.mark.timeout(600)
FINAL = ("completed", "failed", "cancelled", "expired")
# one llama.cpp thread: see ONE_THREAD in test_batch_kernel.py
ONE_THREAD = "--ModelManager.n_threads=1"


def chat_line(custom_id: str, content: str, max_tokens: int = 8, **extra) -> dict:
    return {
        "custom_id": custom_id,
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {
            "model": MODEL,
            "max_tokens": max_tokens,
            "temperature": 0,
            "messages": [{"role": "user", "content": content}],
            **extra,
        },
    }


def jsonl(lines: list[dict]) -> io.BytesIO:
    return io.BytesIO("".join(json.dumps(line) + "\n" for line in lines).encode())


def openai_client(srv: JupyterServer) -> OpenAI:
    return OpenAI(base_url=srv.api_url, api_key=srv.token, max_retries=0, timeout=120)


def submit(client: OpenAI, lines: list[dict], endpoint="/v1/chat/completions"):
    uploaded = client.files.create(file=("requests.jsonl", jsonl(lines)), purpose="batch")
    return client.batches.create(
        input_file_id=uploaded.id, endpoint=endpoint, completion_window="24h"
    )


def wait_for(client: OpenAI, batch_id: str, done, timeout: float = 400):
    """Poll until ``done(batch)``; the last batch object."""
    deadline = time.monotonic() + timeout
    while True:
        batch = client.batches.retrieve(batch_id)
        if done(batch):
            return batch
        assert time.monotonic() < deadline, batch
        assert batch.status not in FINAL, batch
        time.sleep(0.2)


def finished(batch) -> bool:
    return batch.status in FINAL


def read_lines(client: OpenAI, file_id: str | None) -> list[dict]:
    if file_id is None:
        return []
    return [json.loads(line) for line in client.files.content(file_id).text.splitlines()]


@pytest.fixture(scope="module")
def batch_server(tmp_path_factory, models_dir):
    root = tmp_path_factory.mktemp("batch-server")
    srv = JupyterServer(
        root, models_dir, [f"--LMSJupyterApp.batch_dir={root / 'batches'}", ONE_THREAD]
    )
    yield srv
    srv.stop()


@pytest.fixture()
def bclient(batch_server):
    return openai_client(batch_server)


def test_round_trip(bclient):
    lines = [chat_line(f"q{i}", f"Name a colour. Number {i}.") for i in range(3)]
    lines.insert(
        1,
        {
            "custom_id": "broken",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {"model": MODEL, "messages": "not a list"},
        },
    )
    created = submit(bclient, lines)
    assert created.status == "validating" and created.endpoint == "/v1/chat/completions"
    assert created.request_counts.total == 4 and created.model == MODEL
    assert created.expires_at - created.created_at == 24 * 3600
    batch = wait_for(bclient, created.id, finished)
    assert batch.status == "completed", batch
    assert batch.request_counts.completed == 3 and batch.request_counts.failed == 1
    assert batch.in_progress_at and batch.finalizing_at and batch.completed_at
    outputs = read_lines(bclient, batch.output_file_id)
    assert [o["custom_id"] for o in outputs] == ["q0", "q1", "q2"]
    for output in outputs:
        response = output["response"]
        assert output["error"] is None and response["status_code"] == 200
        assert response["body"]["object"] == "chat.completion"
        assert response["body"]["choices"][0]["message"]["content"]
        assert output["id"].startswith("batch_req_")
    (error,) = read_lines(bclient, batch.error_file_id)
    assert error["custom_id"] == "broken" and error["response"]["status_code"] == 400
    assert error["response"]["body"]["error"]["param"] == "messages"
    usage = [o["response"]["body"]["usage"] for o in outputs]
    assert batch.usage.input_tokens == sum(u["prompt_tokens"] for u in usage)
    assert batch.usage.output_tokens == sum(u["completion_tokens"] for u in usage)
    assert batch.usage.total_tokens == batch.usage.input_tokens + batch.usage.output_tokens
    # the same text as a plain request with the same body (temperature 0)
    direct = bclient.chat.completions.create(**lines[0]["body"])
    assert (
        direct.choices[0].message.content
        == outputs[0]["response"]["body"]["choices"][0]["message"]["content"]
    )

    # files: listed, retrievable, output files have purpose batch_output
    listed = {f.id: f for f in bclient.files.list()}
    assert listed[batch.output_file_id].purpose == "batch_output"
    assert listed[created.input_file_id].purpose == "batch"
    info = bclient.files.retrieve(created.input_file_id)
    assert info.bytes == len(jsonl(lines).getvalue()) and info.filename == "requests.jsonl"
    assert batch.id in [b.id for b in bclient.batches.list()]
    # deleting the input file does not touch the finished batch
    assert bclient.files.delete(created.input_file_id).deleted
    with pytest.raises(openai.NotFoundError):
        bclient.files.retrieve(created.input_file_id)
    assert bclient.batches.retrieve(batch.id).status == "completed"
    with pytest.raises(openai.ConflictError):
        bclient.batches.cancel(batch.id)


def test_embeddings_batch(bclient):
    lines = [
        {
            "custom_id": f"e{i}",
            "method": "POST",
            "url": "/v1/embeddings",
            "body": {"model": MODEL, "input": text},
        }
        for i, text in enumerate(["red apples", ["green pears", "blue plums"]])
    ]
    batch = wait_for(bclient, submit(bclient, lines, "/v1/embeddings").id, finished)
    assert batch.status == "completed" and batch.request_counts.completed == 2
    outputs = read_lines(bclient, batch.output_file_id)
    assert [len(o["response"]["body"]["data"]) for o in outputs] == [1, 2]
    assert batch.error_file_id is None


def test_bad_input_is_a_clear_error(batch_server, bclient):
    with pytest.raises(openai.BadRequestError, match="Line 2 of the file is not valid JSON"):
        bclient.files.create(file=("x.jsonl", io.BytesIO(b'{"a": 1}\n{oops\n')), purpose="batch")
    with pytest.raises(openai.BadRequestError, match="purpose"):
        bclient.files.create(file=("x.jsonl", io.BytesIO(b"{}\n")), purpose="nonsense")
    with pytest.raises(openai.NotFoundError, match="No such File"):
        bclient.batches.create(
            input_file_id="file-missing", endpoint="/v1/chat/completions", completion_window="24h"
        )
    with pytest.raises(openai.NotFoundError, match="No such batch"):
        bclient.batches.retrieve("batch_missing")
    good = bclient.files.create(file=("ok.jsonl", jsonl([chat_line("a", "hi")])), purpose="batch")
    with pytest.raises(openai.BadRequestError, match="completion_window"):
        bclient.batches.create(
            input_file_id=good.id, endpoint="/v1/chat/completions", completion_window="soon"
        )
    with pytest.raises(openai.BadRequestError, match="endpoint"):
        bclient.batches.create(
            input_file_id=good.id, endpoint="/v1/images/generations", completion_window="24h"
        )
    # malformed lines fail the batch with OpenAI's per-line errors
    lines = [
        chat_line("a", "hi"),
        chat_line("a", "again"),
        {**chat_line("b", "hi"), "url": "/v1/embeddings"},
        {"custom_id": "c", "method": "GET", "url": "/v1/chat/completions", "body": {}},
    ]
    failed = submit(bclient, lines)
    assert failed.status == "failed" and failed.request_counts.total == 0
    assert [(e.line, e.code) for e in failed.errors.data] == [
        (2, "duplicate_custom_id"),
        (3, "mismatched_endpoint"),
        (4, "invalid_method"),
    ]
    # an upload that is not multipart
    raw = httpx.post(
        batch_server.api_url + "/files",
        content=b"{}",
        headers={**batch_server.headers, "Content-Type": "application/json"},
    )
    assert raw.status_code == 400 and raw.json()["error"]["param"] == "file"


def test_responses_batch(bclient):
    """A batch of /v1/responses lines: each output body is a response object (stored, so
    it can be retrieved by id like any other)."""
    lines = [
        {
            "custom_id": f"r{i}",
            "method": "POST",
            "url": "/v1/responses",
            "body": {
                "model": MODEL,
                "input": f"Name a fruit. Number {i}.",
                "max_output_tokens": 6,
                "temperature": 0,
            },
        }
        for i in range(2)
    ]
    created = bclient.batches.create(
        input_file_id=bclient.files.create(file=("r.jsonl", jsonl(lines)), purpose="batch").id,
        endpoint="/v1/responses",
        completion_window="24h",
    )
    batch = wait_for(bclient, created.id, finished)
    assert batch.status == "completed" and batch.request_counts.completed == 2, batch
    outputs = read_lines(bclient, batch.output_file_id)
    assert sorted(o["custom_id"] for o in outputs) == ["r0", "r1"]
    for output in outputs:
        body = output["response"]["body"]
        assert body["object"] == "response" and body["output"][0]["type"] == "message"
        assert (
            bclient.responses.retrieve(body["id"]).output_text
            == body["output"][0]["content"][0]["text"]
        )
    assert batch.usage.output_tokens == sum(
        o["response"]["body"]["usage"]["output_tokens"] for o in outputs
    )


def test_cancel_keeps_what_finished(bclient):
    lines = [chat_line(f"c{i}", f"Count from {i} upwards.", max_tokens=24) for i in range(8)]
    batch = submit(bclient, lines)
    wait_for(bclient, batch.id, lambda b: b.request_counts.completed >= 1)
    cancelling = bclient.batches.cancel(batch.id)
    assert cancelling.status in ("cancelling", "cancelled") and cancelling.cancelling_at
    batch = wait_for(bclient, batch.id, finished)
    assert batch.status == "cancelled" and batch.cancelled_at
    done = batch.request_counts.completed
    assert 1 <= done < 8
    outputs = read_lines(bclient, batch.output_file_id)
    errors = read_lines(bclient, batch.error_file_id)
    assert len(outputs) == done and len(errors) == 8 - done
    assert sorted(o["custom_id"] for o in outputs + errors) == sorted(f"c{i}" for i in range(8))
    assert all(e["error"]["code"] == "batch_cancelled" and e["response"] is None for e in errors)
    assert bclient.batches.cancel(batch.id).status == "cancelled"  # idempotent


def test_interactive_request_is_not_starved(batch_server, bclient):
    """A chat sent while a batch runs waits for at most the batch request(s) already
    running, never for the rest of the batch (the batch goes on afterwards)."""
    lines = [chat_line(f"s{i}", f"Tell me about the number {i}.", max_tokens=24) for i in range(10)]
    batch = submit(bclient, lines)
    before = wait_for(bclient, batch.id, lambda b: b.request_counts.completed >= 1)
    reply = bclient.chat.completions.create(
        model=MODEL, max_tokens=8, temperature=0, messages=[{"role": "user", "content": "Say hi."}]
    )
    assert reply.choices[0].message.content
    after = bclient.batches.retrieve(batch.id)
    assert after.status == "in_progress"
    # the running one, and at most one more that won the race with this request
    assert after.request_counts.completed - before.request_counts.completed <= 2, (
        before.request_counts,
        after.request_counts,
    )
    bclient.batches.cancel(batch.id)
    wait_for(bclient, batch.id, finished)


def test_a_batch_resumes_after_a_restart(tmp_path, models_dir):
    batch_dir = tmp_path / "batches"
    lines = [chat_line(f"r{i}", f"Describe the number {i}.", max_tokens=16) for i in range(6)]
    (tmp_path / "one").mkdir()
    first = JupyterServer(
        tmp_path / "one", models_dir, [f"--LMSJupyterApp.batch_dir={batch_dir}", ONE_THREAD]
    )
    try:
        client = openai_client(first)
        batch = submit(client, lines)
        seen = wait_for(client, batch.id, lambda b: b.request_counts.completed >= 1)
    finally:
        first.stop()  # a clean stop: the running request is dropped, not failed
    stopped_at = int(time.time())  # the second server takes seconds to start: later stamps
    (tmp_path / "two").mkdir()
    second = JupyterServer(
        tmp_path / "two", models_dir, [f"--LMSJupyterApp.batch_dir={batch_dir}", ONE_THREAD]
    )
    try:
        client = openai_client(second)
        resumed = client.batches.retrieve(batch.id)
        assert resumed.request_counts.completed >= seen.request_counts.completed
        assert resumed.request_counts.failed == 0  # nothing was recorded as failed
        final = wait_for(client, batch.id, finished)
        assert final.status == "completed" and final.request_counts.completed == 6
        outputs = read_lines(client, final.output_file_id)
        assert sorted(o["custom_id"] for o in outputs) == sorted(f"r{i}" for i in range(6))
        created = [o["response"]["body"]["created"] for o in outputs]
        before = [c for c in created if c <= stopped_at]
        # what finished before the stop was kept, not computed again after the restart
        assert len(before) >= seen.request_counts.completed
        assert all(c > stopped_at for c in created if c not in before)
        assert len(before) < 6  # the rest ran on the second server
        assert "resuming batch" in second.log_path.read_text()
    finally:
        second.stop()


def test_one_runner_per_batch_folder(tmp_path):
    """Two servers on one folder: only the lock holder runs batches, the other takes over
    when it stops (a real flock on <folder>/runner.lock)."""
    from lms_jupyter.api.files_batches.store import BatchStore

    first, second = BatchStore(tmp_path), BatchStore(tmp_path)
    assert first.claim_runner() and first.claim_runner()
    assert not second.claim_runner()
    first.close()
    assert second.claim_runner()
    second.close()
