"""Embedding models end to end: all-MiniLM-L6-v2 converted to a BERT GGUF (a session
fixture), SmolLM2's mean pooling, the engine's batching, /v1/embeddings through a real
jupyter server with the openai client, JIT side by side with a chat model, and the kernel's
``lms_jupyter.embed`` / ``%lms embed``."""

from __future__ import annotations

import base64
import subprocess
import sys
import zipfile

import httpx
import numpy as np
import openai
import pytest
from conftest import GEMMA, MINILM, MODEL, JupyterServer

from lms_jupyter.api import OpenAICompatAPI
from lms_jupyter.engine.local.embedding import (
    POOLING_MEAN,
    Embedder,
    model_pooling,
    truncate_dimensions,
)
from lms_jupyter.engine.manager import ModelManager
from lms_jupyter.errors import APIError
from lms_jupyter.models.catalog import ModelCatalog
from lms_jupyter.models.convert import minilm_source

pytestmark = pytest.mark.timeout(300)

PARAPHRASES = [
    ("A man is eating food.", "A man is eating a piece of bread."),
    ("The cat sits on the mat.", "A cat is sitting on a rug."),
    ("How do I reset my password?", "I forgot my password, how can I change it?"),
]
UNRELATED = [
    ("A man is eating food.", "The girl is carrying a baby."),
    ("The cat sits on the mat.", "Interest rates rose by half a point."),
    ("How do I reset my password?", "A monkey is playing drums."),
]
LONG = "word " * 600  # 602 tokens with [CLS] and [SEP]; MiniLM takes 512


def cosine(a, b) -> float:
    a, b = np.asarray(a), np.asarray(b)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


# -- the converted model and the engine ---------------------------------------------------------
@pytest.fixture(scope="module")
def catalog(embedding_models_dir):
    return ModelCatalog(embedding_models_dir)


@pytest.fixture(scope="module")
def embedder(catalog):
    _info, variant = catalog.resolve(MINILM)
    engine = Embedder.load(
        variant.path,
        context_length=512,
        n_threads=2,
        pooling=model_pooling(variant.header),
        label=MINILM,
    )
    yield engine
    engine.close()


def test_converted_model_is_a_bert_embedding_model(catalog):
    info, variant = catalog.resolve(MINILM)
    assert info.type == "embeddings" and variant.is_embedding
    assert variant.capabilities == ["embedding"]
    assert variant.arch == "bert" and variant.quantization == "F16"
    assert variant.arch_value("pooling_type") == POOLING_MEAN
    assert variant.max_context_length == 512
    assert not variant.chat_template
    smol, _ = catalog.resolve(MODEL)
    assert smol.type == "llm" and not smol.default_variant.is_embedding


@pytest.mark.parametrize(
    "metadata, embedding",
    [
        ({"general.architecture": "bert"}, True),
        ({"general.architecture": "nomic-bert", "nomic-bert.pooling_type": 1}, True),
        ({"general.architecture": "gemma-embedding", "gemma-embedding.pooling_type": 1}, True),
        (
            {
                "general.architecture": "qwen3",
                "qwen3.pooling_type": 3,  # Qwen3-Embedding
                "tokenizer.chat_template": "{{ messages }}",
            },
            True,
        ),
        ({"general.architecture": "qwen3", "tokenizer.chat_template": "{{ messages }}"}, False),
        ({"general.architecture": "llama", "llama.pooling_type": 0}, False),
        ({"general.architecture": "pangu-embedded"}, False),  # a chat model despite its name
    ],
)
def test_embedding_models_are_recognised_from_metadata(tmp_path, metadata, embedding):
    from lms_jupyter.models.catalog import ModelVariant
    from lms_jupyter.models.gguf import GGUFHeader

    variant = ModelVariant(tmp_path / "m.gguf", GGUFHeader(3, metadata), 1)
    assert variant.is_embedding is embedding
    assert ("embedding" in variant.capabilities) is embedding


def test_tokenization_matches_the_models_tokenizer(embedder):
    assert embedder.tokenize("A man is eating food.") == [
        101,
        1037,
        2158,
        2003,
        5983,
        2833,
        1012,
        102,
    ]
    try:
        from tokenizers import Tokenizer
    except ImportError:
        return  # the known ids above are the check
    tokenizer = Tokenizer.from_str(
        zipfile.ZipFile(minilm_source()).read("tokenizer.json").decode("utf-8")
    )
    tokenizer.no_padding()
    tokenizer.no_truncation()
    for text in [
        "Héllo, WORLD! naïve café, tokenization's edge-cases: 3.14 #hashtag",
        "東京 is big",
        "  spaces   and\ttabs\n",
        "unbelievably antidisestablishment",
        "[CLS] is literal text here",
    ]:
        assert embedder.tokenize(text) == tokenizer.encode(text).ids, text


def test_batches_pack_several_sequences_per_decode(embedder):
    assert embedder.n_seq_max > 1
    groups = embedder.batches([8] * 100)
    assert len(groups) < 10 and sorted(i for g in groups for i in g) == list(range(100))
    assert all(len(g) <= embedder.n_seq_max and 8 * len(g) <= 512 for g in groups)
    assert embedder.batches([400, 400, 30]) == [[0], [1, 2]]


def test_batched_vectors_equal_one_by_one(embedder):
    texts = [f"Sentence {i}: " + "the quick brown fox jumps " * (i % 5) for i in range(40)]
    texts += [p for pair in PARAPHRASES for p in pair]
    together = embedder.embed(texts)
    alone = np.vstack([embedder.embed([t]).vectors for t in texts])
    assert together.vectors.shape == (len(texts), 384)
    np.testing.assert_allclose(together.vectors, alone, atol=2e-4)
    np.testing.assert_allclose(np.linalg.norm(together.vectors, axis=1), 1.0, atol=1e-5)
    assert together.prompt_tokens == sum(len(embedder.tokenize(t)) for t in texts)


def test_long_input_refused_or_truncated_keeping_sep(embedder):
    with pytest.raises(APIError) as err:
        embedder.embed(["short", "fine", LONG])
    assert err.value.status == 400 and err.value.code == "context_length_exceeded"
    assert err.value.param == "input[2]" and "input[2]" in err.value.message
    result = embedder.embed(["short", LONG], truncate=True)
    assert result.truncated == [1]
    tokens = embedder.prepare([LONG], truncate=True)[0][0]
    assert len(tokens) == 512 and tokens[0] == 101 and tokens[-1] == 102
    same = embedder.embed(["word " * 510]).vectors[0]  # exactly the kept tokens
    np.testing.assert_allclose(result.vectors[1], same, atol=2e-4)


def test_dimensions_truncate_and_renormalise():
    vectors = np.array([[3.0, 4.0, 12.0]], dtype=np.float32) / 13
    cut = truncate_dimensions(vectors, 2)
    np.testing.assert_allclose(cut, [[0.6, 0.8]], atol=1e-6)
    assert truncate_dimensions(vectors, None) is vectors


def test_chat_model_keeps_mean_pooling(catalog):
    """SmolLM2's vector is the normalised mean of its per-token output embeddings."""
    import llama_cpp

    manager = ModelManager(catalog, jit_loading=True)
    try:
        api = OpenAICompatAPI(manager)
        body = api.embeddings_sync({"model": MODEL, "input": "hello world"})
        ours = np.array(body["data"][0]["embedding"])
        assert ours.shape == (576,)
        _info, variant = catalog.resolve(MODEL)
        per_token = llama_cpp.Llama(
            str(variant.path),
            n_ctx=256,
            embedding=True,
            pooling_type=llama_cpp.LLAMA_POOLING_TYPE_NONE,
            verbose=False,
        )
        try:
            rows = np.array(per_token.embed("hello world"))
        finally:
            per_token.close()
        assert rows.ndim == 2 and rows.shape[0] == body["usage"]["prompt_tokens"]
        mean = rows.mean(axis=0)
        assert cosine(ours, mean) > 0.9999
        model = manager.get_loaded(MODEL)
        assert not model.embedding_only and model.capabilities.chat  # chat still works
    finally:
        manager.shutdown()


# -- over HTTP ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def server(tmp_path_factory, embedding_models_dir):
    srv = JupyterServer(tmp_path_factory.mktemp("embedding-server"), embedding_models_dir)
    yield srv
    srv.stop()


@pytest.fixture()
def client(server):
    return openai.OpenAI(base_url=server.api_url, api_key=server.token, max_retries=0, timeout=120)


def post(server, path, body):
    return httpx.post(server.url + "lms/" + path, json=body, headers=server.headers, timeout=120)


def test_paraphrases_score_clearly_higher_than_unrelated_pairs(client):
    texts = [t for pair in PARAPHRASES + UNRELATED for t in pair]
    response = client.embeddings.create(model=MINILM, input=texts)
    vectors = [d.embedding for d in response.data]
    assert len(vectors) == len(texts) and len(vectors[0]) == 384
    scores = [cosine(vectors[2 * i], vectors[2 * i + 1]) for i in range(len(texts) // 2)]
    related, unrelated = scores[: len(PARAPHRASES)], scores[len(PARAPHRASES) :]
    assert min(related) > 0.5 and max(unrelated) < 0.3, scores
    assert min(related) - max(unrelated) > 0.3
    assert response.usage.prompt_tokens == response.usage.total_tokens > len(texts) * 3


def test_batch_request_equals_single_requests(client):
    texts = ["hello world", "A man is eating food.", "The girl is carrying a baby."]
    batch = client.embeddings.create(model=MINILM, input=texts)
    assert [d.index for d in batch.data] == [0, 1, 2]
    for text, item in zip(texts, batch.data, strict=False):
        single = client.embeddings.create(model=MINILM, input=text).data[0].embedding
        np.testing.assert_allclose(item.embedding, single, atol=2e-4)


def test_dimensions_and_base64(client):
    full = np.array(
        client.embeddings.create(model=MINILM, input="hello world", encoding_format="float")
        .data[0]
        .embedding
    )
    short = (
        client.embeddings.create(
            model=MINILM, input="hello world", dimensions=64, encoding_format="float"
        )
        .data[0]
        .embedding
    )
    assert len(short) == 64 and abs(np.linalg.norm(short) - 1) < 1e-5
    np.testing.assert_allclose(short, full[:64] / np.linalg.norm(full[:64]), atol=1e-6)
    raw = (
        client.embeddings.create(model=MINILM, input="hello world", encoding_format="base64")
        .data[0]
        .embedding
    )
    assert isinstance(raw, str)
    decoded = np.frombuffer(base64.b64decode(raw), dtype="<f4")
    np.testing.assert_allclose(decoded, full, atol=1e-7)


def test_token_ids_embed_exactly_as_given(client, embedder):
    """Token ids are the model's own and go in as they are: [CLS] ... [SEP] from the
    model's tokenizer give the text's vector; the bare word pieces give another one."""
    texts = ["A man is eating food.", "hello world"]
    ids = [embedder.tokenize(t) for t in texts]
    assert ids[0][0] == 101 and ids[0][-1] == 102  # [CLS] ... [SEP]
    by_text = client.embeddings.create(model=MINILM, input=texts)
    by_ids = client.embeddings.create(model=MINILM, input=ids)
    for a, b in zip(by_text.data, by_ids.data, strict=False):
        np.testing.assert_allclose(a.embedding, b.embedding, atol=2e-4)
    assert by_ids.usage.prompt_tokens == by_text.usage.prompt_tokens
    bare = client.embeddings.create(model=MINILM, input=ids[0][1:-1]).data[0].embedding
    assert cosine(bare, by_text.data[0].embedding) < 0.999


def test_long_input_is_a_400_naming_its_index(client, server):
    with pytest.raises(openai.BadRequestError) as err:
        client.embeddings.create(model=MINILM, input=["one", "two", "three", LONG])
    body = err.value.body
    assert body["code"] == "context_length_exceeded" and body["param"] == "input[3]"
    assert "input[3]" in body["message"] and "512" in body["message"]
    r = post(server, "v1/embeddings", {"model": MINILM, "input": ["one", LONG], "truncate": True})
    assert r.status_code == 200, r.text
    data = r.json()
    assert data["truncated"] == [1] and len(data["data"]) == 2
    assert data["usage"]["prompt_tokens"] == 3 + 512
    plain = post(server, "v1/embeddings", {"model": MINILM, "input": "one"}).json()
    assert "truncated" not in plain


@pytest.mark.parametrize(
    "body, param",
    [
        ({"input": "x"}, "model"),
        ({"model": MINILM}, "input"),
        ({"model": MINILM, "input": []}, "input"),
        ({"model": MINILM, "input": ["ok", ""]}, "input[1]"),
        ({"model": MINILM, "input": [1.5, 2]}, "input[0]"),
        ({"model": MINILM, "input": [[101, 102], []]}, "input[1]"),
        ({"model": MINILM, "input": [[101, -2]]}, "input[0]"),
        ({"model": MINILM, "input": [101, 30522]}, "input"),  # the vocabulary is 0..30521
        ({"model": MINILM, "input": ["text", True]}, "input[1]"),
        ({"model": MINILM, "input": "x", "encoding_format": "int8"}, "encoding_format"),
        ({"model": MINILM, "input": "x", "dimensions": 0}, "dimensions"),
        ({"model": MINILM, "input": "x", "dimensions": 385}, "dimensions"),
        ({"model": MINILM, "input": "x", "truncate": "yes"}, "truncate"),
    ],
)
def test_bad_requests_are_openai_errors(server, body, param):
    r = post(server, "v1/embeddings", body)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["param"] == param and error["type"] == "invalid_request_error"


def test_chat_and_completions_on_an_embedding_model_are_a_clear_400(client):
    messages = [{"role": "user", "content": "hi"}]
    for stream in (False, True):
        with pytest.raises(openai.BadRequestError) as err:
            client.chat.completions.create(
                model=MINILM, messages=messages, max_tokens=4, stream=stream
            )
        assert err.value.body["code"] == "model_not_chat_capable"
        assert "embedding model" in err.value.body["message"]
    with pytest.raises(openai.BadRequestError) as err:
        client.completions.create(model=MINILM, prompt="hi", max_tokens=4)
    assert err.value.body["code"] == "model_not_chat_capable"


def test_models_lists_show_the_embedding_type(server, client):
    v0 = httpx.get(server.url + "lms/api/v0/models", headers=server.headers).json()["data"]
    entry = next(m for m in v0 if m["id"] == MINILM)
    assert entry["type"] == "embeddings" and entry["capabilities"] == ["embedding"]
    assert entry["arch"] == "bert" and entry["max_context_length"] == 512
    assert next(m for m in v0 if m["id"] == MODEL)["type"] == "llm"
    v1 = httpx.get(server.url + "lms/api/v1/models", headers=server.headers).json()["models"]
    assert next(m for m in v1 if m["key"] == MINILM)["type"] == "embedding"
    assert MINILM in [m.id for m in client.models.list().data]
    r = post(server, "api/v0/embeddings", {"model": MINILM, "input": "hello"})
    assert r.status_code == 200 and len(r.json()["data"][0]["embedding"]) == 384


def test_rag_loop_keeps_both_models_loaded(tmp_path, embedding_models_dir):
    """embed -> chat -> embed loads each model once; a second LLM still evicts the first."""
    srv = JupyterServer(tmp_path, embedding_models_dir)
    try:
        client = openai.OpenAI(base_url=srv.api_url, api_key=srv.token, max_retries=0)

        def ps():
            rows = httpx.get(srv.url + "lms/api/v0/ps", headers=srv.headers).json()["data"]
            return {row["identifier"]: row for row in rows}

        chat = {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}
        client.embeddings.create(model=MINILM, input="question")
        first = ps()[MINILM]
        client.chat.completions.create(model=MODEL, **chat)
        client.embeddings.create(model=MINILM, input="another question")
        loaded = ps()
        assert set(loaded) == {MINILM, MODEL}
        assert loaded[MINILM]["loadedAt"] == first["loadedAt"]  # never reloaded
        assert loaded[MINILM]["type"] == "embedding" and loaded[MINILM]["jit"]
        smol_loaded_at = loaded[MODEL]["loadedAt"]
        client.chat.completions.create(model=MODEL, **chat)
        assert ps()[MODEL]["loadedAt"] == smol_loaded_at
        client.chat.completions.create(model=GEMMA, **chat)  # same type: auto-evict
        assert set(ps()) == {MINILM, GEMMA}
    finally:
        srv.stop()


# -- the kernel -----------------------------------------------------------------------------------
def test_import_stays_cheap():
    code = (
        "import sys, lms_jupyter\n"
        "assert callable(lms_jupyter.embed)\n"
        "bad = [m for m in ('numpy', 'llama_cpp', 'IPython') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_embed_in_an_ipython_shell(catalog, capsys):
    from IPython.core.error import UsageError
    from IPython.core.interactiveshell import InteractiveShell

    import lms_jupyter
    from lms_jupyter.kernel import runtime

    manager = ModelManager(catalog, jit_loading=True)
    previous = runtime.set_manager(manager)
    shell = InteractiveShell.instance()
    shell.extension_manager.load_extension("lms_jupyter")
    try:
        vectors = lms_jupyter.embed(["A man is eating food.", "A man is eating bread."])
        assert vectors.shape == (2, 384) and vectors.dtype == np.float32  # the only one on disk
        assert float(vectors[0] @ vectors[1]) > 0.5
        one = lms_jupyter.embed("A man is eating food.", model=MINILM)
        assert one.shape == (384,)
        np.testing.assert_allclose(one, vectors[0], atol=2e-4)
        assert lms_jupyter.embed(["x"], model=MINILM, dimensions=32).shape == (1, 32)
        capsys.readouterr()
        shell.run_line_magic(
            "lms",
            f'embed {MINILM} "A man is eating food." '
            '"A man is eating bread." "Stocks fell sharply."',
        )
        out = capsys.readouterr().out
        assert out.startswith(f"{MINILM} · 3 texts · 384 dims · ")
        assert "norm 1.0000" in out and "cosine similarity" in out
        with pytest.raises(UsageError):
            shell.run_line_magic("lms", f"embed {MINILM}")
        with pytest.raises(UsageError) as err:
            shell.run_line_magic("lms", f'embed {MINILM} "x" --dimensions 9999')
        assert "dimensions" in str(err.value)
    finally:
        shell.extension_manager.unload_extension("lms_jupyter")
        runtime.set_manager(previous)
        manager.shutdown()


def test_embed_from_the_terminal(embedding_models_dir):
    import json
    import os

    env = dict(os.environ, LMS_JUPYTER_MODELS_DIR=str(embedding_models_dir))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "lms_jupyter.cli",
            "embed",
            MINILM,
            "A man is eating food.",
            "A man is eating bread.",
            "--json",
            "--dimensions",
            "16",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    vectors = np.array(data["embeddings"])
    assert vectors.shape == (2, 16) and data["model"] == MINILM
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    missing = subprocess.run(
        [sys.executable, "-m", "lms_jupyter.cli", "embed", "no-such", "x"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert missing.returncode == 1 and "does not exist" in missing.stderr
