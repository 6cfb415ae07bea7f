"""``/v1/completions`` with OpenAI's ``suffix``: fill-in-the-middle through the model's FIM
tokens when its GGUF declares them, a plain continuation of the prompt otherwise; and a
client that goes away mid-stream frees the slot at once (what the editor's inline
completer relies on when the user keeps typing).

SmolLM2 declares no FIM tokens; a copy of it whose header names three of its special
tokens as FIM tokens (tests/gguf_fim.py) runs the FIM path through the real model.
"""

from __future__ import annotations

import time

import httpx
import pytest
from conftest import EOS_ID, MODEL, JupyterServer
from gguf_fim import write_with_fim_tokens

FIM_MODEL = "smollm2-135m-fim"
FIM_IDS = (8, 9, 10)  # <issue_start>, <issue_comment>, <issue_closed> in SmolLM2's vocabulary
PREFIX = "def add(a, b):\n    "
SUFFIX = "\n\nprint(add(1, 2))\n"


@pytest.fixture(scope="module")
def fim_server(tmp_path_factory, smollm_path):
    models = tmp_path_factory.mktemp("fim-models")
    write_with_fim_tokens(
        smollm_path,
        models / "lms-test" / "smollm2-135m-fim-GGUF" / "smollm2-135m-fim-Q4_1.gguf",
        *FIM_IDS,
    )
    srv = JupyterServer(tmp_path_factory.mktemp("fim-server"), models)
    yield srv
    srv.stop()


def _complete(srv, **body) -> dict:
    r = httpx.post(
        srv.api_url + "/completions",
        headers=srv.headers,
        timeout=120,
        json={"max_tokens": 8, "temperature": 0, **body},
    )
    assert r.status_code == 200, r.text
    return r.json()


def _prompt_tokens(srv, model: str, text: str) -> int:
    return _complete(srv, model=model, prompt=text, max_tokens=1)["usage"]["prompt_tokens"]


def test_fim_prompt_wraps_prefix_and_suffix_in_the_models_tokens(fim_server):
    plain = _complete(fim_server, model=FIM_MODEL, prompt=PREFIX)
    fim = _complete(fim_server, model=FIM_MODEL, prompt=PREFIX, suffix=SUFFIX)
    n_prefix = _prompt_tokens(fim_server, FIM_MODEL, PREFIX)
    n_suffix = _prompt_tokens(fim_server, FIM_MODEL, SUFFIX)
    # SmolLM2 adds no BOS: <PRE> prefix <SUF> suffix <MID>
    assert fim["usage"]["prompt_tokens"] == n_prefix + n_suffix + 3
    assert plain["usage"]["prompt_tokens"] == n_prefix
    assert fim["choices"][0]["text"] and fim["usage"]["completion_tokens"] <= 8
    # an empty suffix is still a FIM prompt (the cursor at the end of the text)
    empty = _complete(fim_server, model=FIM_MODEL, prompt=PREFIX, suffix="")
    assert empty["usage"]["prompt_tokens"] == n_prefix + 3


def test_fim_streams_with_stop_and_max_tokens(fim_server):
    whole = _complete(
        fim_server,
        model=FIM_MODEL,
        prompt=PREFIX,
        suffix=SUFFIX,
        max_tokens=12,
        logit_bias={str(EOS_ID): -100},
    )
    text = whole["choices"][0]["text"]
    assert whole["usage"]["completion_tokens"] == 12
    chunks = []
    with httpx.stream(
        "POST",
        fim_server.api_url + "/completions",
        headers=fim_server.headers,
        timeout=120,
        json={
            "model": FIM_MODEL,
            "prompt": PREFIX,
            "suffix": SUFFIX,
            "max_tokens": 12,
            "temperature": 0,
            "stream": True,
            "logit_bias": {str(EOS_ID): -100},
        },
    ) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                chunks.append(httpx.Response(200, content=line[6:]).json())
    assert "".join(c["choices"][0]["text"] for c in chunks) == text
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    # a stop string cuts the same completion where it first appears
    stop = text.strip()[:2]
    cut = _complete(
        fim_server,
        model=FIM_MODEL,
        prompt=PREFIX,
        suffix=SUFFIX,
        max_tokens=12,
        logit_bias={str(EOS_ID): -100},
        stop=[stop],
    )
    assert cut["choices"][0]["text"] == text[: text.index(stop)]
    assert cut["choices"][0]["finish_reason"] == "stop"


def test_without_fim_tokens_the_suffix_is_ignored(fim_server):
    """SmolLM2 itself: the prompt is continued as if no suffix had been sent."""
    plain = _complete(fim_server, model=MODEL, prompt=PREFIX)
    with_suffix = _complete(fim_server, model=MODEL, prompt=PREFIX, suffix=SUFFIX)
    assert with_suffix["usage"]["prompt_tokens"] == plain["usage"]["prompt_tokens"]
    assert with_suffix["choices"][0]["text"] == plain["choices"][0]["text"]


def test_a_bad_suffix_is_an_openai_error(fim_server):
    r = httpx.post(
        fim_server.api_url + "/completions",
        headers=fim_server.headers,
        timeout=60,
        json={"model": MODEL, "prompt": PREFIX, "suffix": 3},
    )
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["param"] == "suffix" and "string" in error["message"]


def _busy(srv, model: str) -> bool:
    rows = httpx.get(srv.url + "lms/api/v0/ps", headers=srv.headers, timeout=10).json()["data"]
    row = [r for r in rows if r["identifier"] == model]
    return bool(row) and (row[0]["queued"] > 0 or row[0]["status"] != "idle")


@pytest.mark.parametrize("model", [FIM_MODEL, MODEL])
def test_a_disconnect_mid_stream_frees_the_slot_within_a_second(fim_server, model):
    # no special token at all (SmolLM2's ids 0-16): <|endoftext|> would end it early too
    body = {
        "model": model,
        "prompt": PREFIX,
        "suffix": SUFFIX,
        "stream": True,
        "max_tokens": 2000,
        "temperature": 1,
        "logit_bias": {str(t): -100 for t in range(17)},
    }
    with (
        httpx.Client(timeout=60) as http,
        http.stream(
            "POST", fim_server.api_url + "/completions", json=body, headers=fim_server.headers
        ) as r,
    ):
        assert r.status_code == 200
        # Keep the line iterator alive: leaving a `for` over it closes the generator, and
        # httpcore closes the connection on that GeneratorExit, which would be the
        # disconnect itself, racing the check below.
        lines = r.iter_lines()
        for _ in range(7):
            next(lines)
        assert _busy(fim_server, model)  # 2000 tokens take far longer than this
        r.close()  # the editor's completer aborting its fetch
        closed = time.monotonic()
        while _busy(fim_server, model) and time.monotonic() - closed < 1.0:
            time.sleep(0.02)
        assert not _busy(fim_server, model), "the slot was not freed within a second"


def test_the_openai_client_sends_suffix_and_gets_fim_and_errors(fim_server):
    """What an editor plugin does: the ``openai`` SDK's ``completions.create(suffix=...)``,
    streamed and not, and a bad suffix as the SDK's BadRequestError with OpenAI's body."""
    from openai import BadRequestError, OpenAI

    client = OpenAI(
        base_url=fim_server.api_url, api_key=fim_server.token, max_retries=0, timeout=120
    )
    plain = client.completions.create(model=FIM_MODEL, prompt=PREFIX, max_tokens=1)
    fim = client.completions.create(
        model=FIM_MODEL, prompt=PREFIX, suffix=SUFFIX, max_tokens=6, temperature=0
    )
    n_suffix = _prompt_tokens(fim_server, FIM_MODEL, SUFFIX)
    assert fim.usage.prompt_tokens == plain.usage.prompt_tokens + n_suffix + 3
    streamed = client.completions.create(
        model=FIM_MODEL, prompt=PREFIX, suffix=SUFFIX, max_tokens=6, temperature=0, stream=True
    )
    assert "".join(c.choices[0].text for c in streamed if c.choices) == fim.choices[0].text
    with pytest.raises(BadRequestError) as err:
        client.completions.create(
            model=FIM_MODEL, prompt=PREFIX, max_tokens=1, extra_body={"suffix": 42}
        )
    body = err.value.body
    assert body["param"] == "suffix" and body["type"] == "invalid_request_error"
