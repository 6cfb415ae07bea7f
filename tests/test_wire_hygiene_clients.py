"""Issue 26 point 4: errors in OpenAI's phrasing, as litellm recognises them, through
the real server (litellm's openai-compatible provider pointed at /lms/v1)."""

from __future__ import annotations

import pytest
from conftest import MODEL

litellm = pytest.importorskip("litellm")


def _call(server, **kwargs):
    kwargs.setdefault("api_key", server.token)
    return litellm.completion(
        model=f"openai/{kwargs.pop('model', MODEL)}",
        api_base=server.api_url,
        max_tokens=4,
        num_retries=0,
        **kwargs,
    )


def test_litellm_raises_its_context_window_error(server):
    with pytest.raises(litellm.ContextWindowExceededError) as caught:
        _call(server, messages=[{"role": "user", "content": "hello " * 40000}])
    message = str(caught.value)
    assert "This model's maximum context length is" in message
    assert "However, your messages resulted in" in message
    assert "larger context length" in message  # our hint stays, after OpenAI's phrase


def test_litellm_unknown_model_and_bad_key(server):
    with pytest.raises(litellm.NotFoundError) as caught:
        _call(server, model="no-such-model", messages=[{"role": "user", "content": "hi"}])
    assert "The model `no-such-model` does not exist" in str(caught.value)
    with pytest.raises(litellm.AuthenticationError) as caught:
        _call(server, api_key="wrong", messages=[{"role": "user", "content": "hi"}])
    assert "Incorrect API key provided" in str(caught.value)
