"""The OpenAPI document at ``{base}lms/openapi.json`` is the contract, and schemathesis
holds the live server to it: for every operation, positive cases (bodies the schema
accepts) and negative ones (bodies it rejects) are sent to a real server running the
real model. Every answer must be documented (status, content type, headers), match its
schema, carry no traceback text and never be a 5xx; a body the schema rejects must be
refused; a request without credentials must be refused.

Bounded and deterministic: a fixed number of examples per operation and mode, Hypothesis
derandomized, so every run sends the same cases. The cases are not shrunk: each failure
is collected with its curl command and all of them are reported together.

To keep generation short on two cores, each case that names a real model gets at most 8
new tokens and ``force`` is dropped from loads (the memory budget stays the guardrail).
Half of the cases name the real model, so chat, completions, embeddings,
loads and estimates run for real instead of stopping at "model not found".
"""

from __future__ import annotations

import re
import time
from collections import Counter

import httpx
import pytest

schemathesis = pytest.importorskip("schemathesis")

from conftest import MODEL, JupyterServer  # noqa: E402
from fakehub import FakeHub  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi import checks as oas  # noqa: E402

pytestmark = pytest.mark.timeout(900)

EXAMPLES = {GenerationMode.POSITIVE: 12, GenerationMode.NEGATIVE: 8}
MAX_NEW_TOKENS = 8
MAX_CONTEXT = 512
MAX_INPUTS = 16
ENDLESS = ("/logs/stream", "/api/v0/events")  # SSE that never ends: tested on their own
_TRACEBACK = re.compile(r"Traceback \(most recent call last\)|File \"[^\"]+\", line \d+")


@schemathesis.check
def no_traceback_text(ctx, response, case):
    """No Python traceback reaches a client, in any body, error or not."""
    if _TRACEBACK.search(response.text or ""):
        raise AssertionError("The response carries traceback text")
    return True


CHECKS = [
    not_a_server_error,
    oas.status_code_conformance,
    oas.content_type_conformance,
    oas.response_headers_conformance,
    oas.response_schema_conformance,
    oas.negative_data_rejection,
    oas.ignored_auth,
    no_traceback_text,
]


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory):
    hub = FakeHub()  # downloads ask a Hub on loopback: no network, real 404s
    root = tmp_path_factory.mktemp("fuzz")
    models = root / "models"
    models.mkdir()
    srv = JupyterServer(
        root,
        models,
        ["--ModelManager.default_context_length=256", "--ModelManager.memory_limit_mb=1200"],
        env={
            "HF_ENDPOINT": hub.endpoint,
            "JUPYTER_DATA_DIR": str(root / "data"),
            "LMS_JUPYTER_PRESETS_DIR": str(root / "presets"),
        },
    )
    yield srv
    srv.stop()
    hub.close()


def _bound(case, real_model: bool) -> None:
    """Keep a case cheap without changing what it tests (see the module docstring): only
    values the schema accepts are replaced, by other values it accepts."""
    body = case.body
    if not isinstance(body, dict):
        return
    model = body.get("model")
    if real_model and isinstance(model, str) and re.search(r"\S", model):
        body["model"] = MODEL
    if body.get("model") != MODEL:
        return
    aliases = ("max_tokens", "max_completion_tokens", "max_output_tokens")
    for name in aliases:
        value = body.get(name)
        if _is_int(value) and (value == -1 or value > MAX_NEW_TOKENS):
            body[name] = MAX_NEW_TOKENS
    if not any(body.get(name) is not None for name in aliases):
        body["max_tokens"] = MAX_NEW_TOKENS
    if _is_int(body.get("context_length")) and body["context_length"] > MAX_CONTEXT:
        body["context_length"] = MAX_CONTEXT  # a JIT load sets the context for later cases
    inputs = body.get("input")
    if isinstance(inputs, list) and MAX_INPUTS < len(inputs) <= 2048:
        body["input"] = inputs[:MAX_INPUTS]
    body.pop("force", None)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def test_every_route_conforms_to_the_openapi_document(fuzz_server):
    srv = fuzz_server
    document = httpx.get(srv.url + "lms/openapi.json", headers=srv.headers, timeout=30).json()
    schema = schemathesis.openapi.from_dict(document)
    base = srv.url.rstrip("/")  # the document's paths start with /lms
    ran: Counter = Counter()
    failures: list[str] = []
    operations = [r.ok() for r in schema.get_all_operations()]
    assert len(operations) >= 20

    for operation in operations:
        if operation.path.endswith(ENDLESS):
            continue
        for mode, examples in EXAMPLES.items():

            @settings(
                max_examples=examples,
                derandomize=True,
                database=None,
                deadline=None,
                suppress_health_check=list(HealthCheck),
            )
            @given(case=operation.as_strategy(generation_mode=mode), real=st.booleans())
            def run(case, real):
                _bound(case, real)
                ran[operation.label] += 1  # noqa: B023 - run() is called in this iteration
                t0 = time.perf_counter()
                try:
                    case.call_and_validate(
                        base_url=base, headers=srv.headers, checks=CHECKS, timeout=120
                    )
                except BaseException as exc:
                    if isinstance(exc, KeyboardInterrupt):
                        raise
                    failures.append(f"{operation.label} [{mode.value}]: {str(exc)[:1500]}")  # noqa: B023
                took = time.perf_counter() - t0
                if took > 2:
                    print(f"    slow {took:.1f}s: {str(case.body)[:300]}", flush=True)

            started = time.perf_counter()
            run()
            print(
                f"  {operation.label} [{mode.value}]: {time.perf_counter() - started:.1f} s",
                flush=True,
            )

    total = sum(ran.values())
    print(f"\nschemathesis: {total} cases over {len(ran)} operations, {len(failures)} failed")
    for label, n in sorted(ran.items()):
        print(f"  {n:4d}  {label}")
    distinct = {}
    for failure in failures:  # one report per operation and kind of failure
        key = (failure.split(":")[0], re.findall(r"- ST\d+ [^\n]+", failure)[:1].__str__())
        distinct.setdefault(key, failure)
    assert not failures, f"{len(distinct)} distinct:\n\n" + "\n\n".join(distinct.values())
    # the server is still healthy after all of it
    r = httpx.get(srv.url + "lms/v1/models", headers=srv.headers, timeout=30)
    assert r.status_code == 200
