"""The model manager and chat widgets, driven as a frontend would (button clicks)."""

from __future__ import annotations

import time

import pytest
from conftest import EOS_ID, GEMMA, MODEL, wait_for

from lms_jupyter.engine.manager import ModelManager
from lms_jupyter.engine.options import LoadRequest
from lms_jupyter.kernel.widgets import ChatWidget, ModelManagerWidget
from lms_jupyter.models.catalog import ModelCatalog

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def manager(models_dir):
    mgr = ModelManager(ModelCatalog(models_dir))
    yield mgr
    mgr.shutdown()


@pytest.fixture(scope="module")
def api(manager):
    from lms_jupyter.api import OpenAICompatAPI

    return OpenAICompatAPI(manager)


def test_manager_widget_buttons_progress_and_outside_events(manager):
    manager.unload_all()
    widget = ModelManagerWidget(manager)
    try:
        assert set(widget.rows) == {MODEL, GEMMA}
        row = widget.rows[MODEL]
        assert row.state.value == "not loaded" and row.button.description == "Load"
        row.button.click()
        assert row.button.disabled and row.progress.layout.visibility == "visible"
        assert widget.wait(60)
        assert row.progress.value == 1.0 and row.progress.layout.visibility == "hidden"
        assert row.state.value.startswith("✓ loaded (smollm2-135m-instruct)")
        assert row.button.description == "Unload" and not row.button.disabled
        assert widget.message.value.startswith("Loaded smollm2-135m-instruct in")

        manager.load(
            LoadRequest(MODEL, identifier="elsewhere", context_length=256)
        )  # e.g. %lms load
        assert "elsewhere" in row.state.value
        manager.unload(MODEL)
        manager.unload("elsewhere")
        assert row.state.value == "not loaded"

        manager.load(LoadRequest(MODEL, context_length=256))
        assert row.button.description == "Unload"
        row.button.click()  # unload from the widget
        assert manager.list_loaded() == [] and row.state.value == "not loaded"
        text = widget._repr_mimebundle_()["text/plain"]
        assert "Model manager" in text and GEMMA in text
    finally:
        widget.close()
    manager.load(LoadRequest(MODEL, context_length=256))
    assert widget.rows[MODEL].state.value == "not loaded"  # closed: no longer listening
    manager.unload_all()


def test_manager_widget_reports_load_errors(manager):
    widget = ModelManagerWidget(manager)
    try:
        manager.catalog.models()  # a model that vanishes between listing and loading
        row = widget.rows[GEMMA]
        widget.manager = type(
            "Failing",
            (),
            {
                "load": staticmethod(
                    lambda request, progress=None: (_ for _ in ()).throw(RuntimeError("disk gone"))
                ),
                "list_loaded": manager.list_loaded,
                "catalog": manager.catalog,
                "unload": manager.unload,
            },
        )()
        widget.load(GEMMA)
        assert widget.wait(30)
        assert "Could not load gemma-3-270m: disk gone" in widget.message.value
        assert row.state.value == "not loaded" and not row.button.disabled
    finally:
        widget.manager = manager
        widget.close()


def test_chat_widget_send_streams_and_continues(api):
    chat = ChatWidget(model=MODEL, api=api, temperature=0, max_tokens=12)
    chat.input.value = "Say hello."
    chat.send_button.click()
    assert chat.busy and chat.send_button.disabled and not chat.stop_button.disabled
    assert chat.wait(60) and chat.last_error is None
    children = chat.transcript.children
    assert [c.value for c in children[0::2]] == ["<b>You</b>", f"<b>{MODEL}</b>"]
    answer = children[3].outputs[0]["data"]["text/markdown"]
    assert answer == chat.last_result.content and answer
    assert "tokens" in chat.status.value and chat.input.value == ""
    assert chat.stop_button.disabled and not chat.send_button.disabled

    chat.send("And goodbye?")
    assert chat.wait(60)
    assert len(chat.conversation) == 4 and len(chat.transcript.children) == 8
    assert "Chat with" in chat._repr_mimebundle_()["text/plain"]
    chat.new_button.click()
    assert len(chat.conversation) == 0 and chat.transcript.children == ()


def test_chat_widget_stop_keeps_partial_answer(api, manager):
    chat = ChatWidget(
        model=MODEL,
        api=api,
        temperature=0,
        max_tokens=400,
        request_defaults={"logit_bias": {str(EOS_ID): -100}},
    )
    chat.send("Write a long story about a castle.")
    wait_for(
        lambda: (
            len(chat.transcript.children) == 4
            and chat.transcript.children[3].outputs[0]["data"]["text/plain"]
        ),
        "the answer's first text",
        timeout=60,
    )
    assert not chat.wait(0.05)  # still generating: the kernel thread was never blocked
    stopped_at = time.perf_counter()
    chat.stop_button.click()
    assert chat.wait(10)
    model = manager.get_loaded(MODEL)
    wait_for(lambda: model.queued == 0, "the model to go idle", timeout=10, poll=0.01)
    latency = time.perf_counter() - stopped_at
    print(f"\nchat widget: stopped {latency * 1000:.0f} ms after Stop")
    assert latency < 3.0
    result = chat.last_result
    assert result.interrupted and 0 < result.stats.completion_tokens < 400
    shown = chat.transcript.children[3].outputs[0]["data"]["text/plain"]
    assert shown == result.content + "\n\n*(stopped)*"
    assert chat.conversation.messages[-1]["content"] == result.content


def test_chat_widget_reports_unknown_model(api):
    chat = ChatWidget(model="no-such-model", api=api)
    chat.send("hi")
    assert chat.wait(30)
    assert chat.last_error.startswith("The model `no-such-model` does not exist")
    assert "Error:" in chat.status.value and not chat.send_button.disabled
