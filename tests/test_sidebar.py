"""The JupyterLab sidebar in a real browser: Debian's chromium driven by Playwright against
``jupyter lab`` on loopback under a non-root base_url with a token, the real model and the
extension built from this checkout.

One flow, as a person would use it: open the sidebar, see the embedded model, load it (the
memory guardrail refuses, "Load anyway" forces it), send a message and watch the answer
grow, reload the page and find the conversation again, stop a long answer and see the
server go idle, start a new chat, unload. No console errors along the way.

Screenshots go to the test's tmp dir and, when ``LMS_JUPYTER_ARTIFACTS`` is set, there too.
Chromium comes from ``apt-get install chromium`` (scripts/dev.sh does it); never a download.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import httpx
import pytest
from browser_session import (
    artifacts_folder,
    chromium_page,
    lab_setup,
    require_browser,
    write_settings,
)
from conftest import MODEL, JupyterServer
from conftest import wait_for as _wait_for

PLUGIN = "lms-jupyter:plugin"
LOAD_URL_SUFFIX = "lms/api/v1/models/load"

# The first answer must end by itself: EOS (id 2) banned, so exactly SHORT_ANSWER tokens.
SHORT_ANSWER = 32
SETTINGS = {"maxTokens": SHORT_ANSWER, "extraRequestFields": {"logit_bias": {"2": -100}}}

pytestmark = pytest.mark.timeout(900)  # generation is slow when the 2 cores are shared


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """``jupyter lab`` with lms_jupyter, serving the extension built in this checkout (put
    first on JUPYTER_PATH, so an older installed copy cannot shadow it)."""
    require_browser()
    root = tmp_path_factory.mktemp("lab")
    models = tmp_path_factory.mktemp("no-extra-models")  # only the embedded SmolLM2
    # A tiny memory budget: an explicit load is refused until forced.
    setup = lab_setup(root, "--ModelManager.memory_limit_mb=1")
    write_settings(setup.settings, "lms-jupyter", "plugin", SETTINGS)
    notebooks, options = setup.notebooks, setup.options
    server = JupyterServer(notebooks, models, **options)
    server.restart_args = ((notebooks, models), options)  # for _restart()
    yield server
    server.stop()


@pytest.fixture()
def artifacts(tmp_path):
    yield from artifacts_folder(tmp_path, "sidebar")


@pytest.fixture()
def browser_page(lab, artifacts):
    with chromium_page(lab, artifacts) as session:
        yield session


def _ps(lab) -> list[dict]:
    r = httpx.get(lab.url + "lms/api/v0/ps", headers=lab.headers, timeout=10)
    r.raise_for_status()
    return r.json()["data"]


def _saved_chat(lab) -> dict | None:
    """The conversation as the state database saved it into the workspace file."""
    r = httpx.get(lab.url + "lab/api/workspaces", headers=lab.headers, timeout=10)
    r.raise_for_status()
    for workspace in r.json()["workspaces"]["values"]:
        chat = workspace.get("data", {}).get("lms-jupyter:chat")
        if chat is not None:
            return chat
    return None


def _wait_for_lab(page) -> None:
    """JupyterLab restores its layout, activates the restored main-area widget and takes the
    focus before it drops the splash screen: anything typed or clicked earlier can be undone
    (a modal command palette opened then closes when the restored widget takes the focus,
    the flake CI hit once)."""
    from playwright.sync_api import expect

    expect(page.locator("#jupyterlab-splash")).to_have_count(0, timeout=120_000)
    expect(page.locator(".jp-Launcher")).to_be_visible(timeout=120_000)


def _open_sidebar(page) -> None:
    """Selects the LM Studio tab unless the restored layout already has it open (a click on a
    selected tab would close the sidebar)."""
    from playwright.sync_api import expect

    _wait_for_lab(page)
    tab = page.get_by_role("tab", name="LM Studio")
    if tab.get_attribute("aria-selected") != "true":
        tab.click()
    expect(tab).to_have_attribute("aria-selected", "true")


def test_sidebar_end_to_end(lab, browser_page, artifacts):
    from playwright.sync_api import expect

    page, console = browser_page
    page.goto(f"{lab.url}lab?token={lab.token}")
    # The tab: an icon whose accessible name is the title.
    _open_sidebar(page)
    tab = page.get_by_role("tab", name="LM Studio")
    models = page.get_by_role("list", name="Models")
    row = models.get_by_role("listitem").filter(has_text=MODEL)
    expect(row).to_be_visible()
    expect(row).to_contain_text("not loaded")
    expect(row).to_contain_text("Q4_1")
    expect(row).to_contain_text("MB")
    page.screenshot(path=artifacts / "01-models.png")

    # Load: the 1 MB budget refuses it with the API's own message, "Load anyway" forces it.
    refusal = httpx.post(
        lab.url + LOAD_URL_SUFFIX, headers=lab.headers, json={"model": MODEL}, timeout=30
    )
    assert refusal.status_code == 400
    assert refusal.json()["error"]["code"] == "insufficient_memory"
    row.get_by_role("button", name=f"Load {MODEL}").click()
    alert = row.get_by_role("alert")
    expect(alert).to_contain_text(refusal.json()["error"]["message"])
    page.screenshot(path=artifacts / "02-insufficient-memory.png")
    row.get_by_role("button", name="Load anyway").click()
    expect(row.get_by_role("button", name=f"Unload {MODEL}")).to_be_visible()
    expect(row.get_by_role("alert")).to_have_count(0)
    expect(row).to_contain_text("idle · queued 0")
    loaded = _ps(lab)
    assert [(m["identifier"], m["status"], m["queued"]) for m in loaded] == [(MODEL, "idle", 0)]

    # Chat: loaded models first in the picker.
    picker = page.get_by_role("combobox", name="Chat model")
    expect(picker).to_have_value(MODEL)
    first_option = picker.locator("option").first
    expect(first_option).to_have_attribute("value", MODEL)
    message = page.get_by_role("textbox", name="Message")
    conversation = page.get_by_role("region", name="Conversation")
    message.click()
    message.type("Hello")
    message.press("Shift+Enter")
    message.type("there")
    expect(message).to_have_value("Hello\nthere")
    expect(conversation.locator(".lms-Turn")).to_have_count(0)  # Shift+Enter did not send

    # Record every text the answer shows while it streams.
    page.evaluate("""() => {
        const conv = document.querySelector('[role=region][aria-label=Conversation]');
        window.__lmsTexts = [];
        new MutationObserver(() => {
            const answers = conv.querySelectorAll('.lms-Turn-assistant .lms-Turn-content');
            const last = answers[answers.length - 1];
            const text = last ? last.innerText.trim() : '';
            const texts = window.__lmsTexts;
            if (text && texts[texts.length - 1] !== text) texts.push(text);
        }).observe(conv, {subtree: true, childList: true, characterData: true});
    }""")
    message.fill("Write a poem about the sea.")
    message.press("Enter")
    expect(message).to_have_value("")
    answer = conversation.locator(".lms-Turn-assistant").last
    stats = answer.locator(".lms-Stats")
    expect(stats).to_contain_text("tok/s", timeout=300_000)
    expect(stats).to_contain_text(f"{SHORT_ANSWER} tokens")
    expect(page.get_by_role("button", name="Stop")).to_be_disabled()
    expect(page.get_by_role("button", name="Send")).to_be_enabled()
    texts = page.evaluate("() => window.__lmsTexts")
    final = answer.locator(".lms-Turn-content").inner_text().strip()
    assert final and texts and texts[-1] == final, (texts[-3:], final)
    assert len(texts) >= 3, f"the answer did not grow token by token: {texts}"
    assert len(texts[0]) < len(final)
    expect(answer.locator(".jp-RenderedMarkdown")).to_have_count(1)  # JupyterLab's renderer
    expect(conversation.locator(".lms-Turn-user")).to_contain_text("Write a poem about the sea.")
    page.screenshot(path=artifacts / "03-answer.png")

    # Closing and reopening the panel keeps the conversation.
    tab.click()
    expect(tab).to_have_attribute("aria-selected", "false")
    expect(conversation).to_be_hidden()
    tab.click()
    expect(conversation.locator(".lms-Turn")).to_have_count(2)
    expect(answer.locator(".lms-Turn-content")).to_have_text(final, use_inner_text=True)

    # The conversation is in the state database (the workspace): it survives a reload.
    saved = _wait_for(
        lambda: (c := _saved_chat(lab)) and len(c["turns"]) == 2 and c,
        "the conversation in the workspace",
    )
    assert saved["turns"][1]["content"].strip()
    assert saved["model"] == MODEL
    # A long answer next: no token limit (EOS stays banned), so it only ends on Stop.
    r = httpx.put(
        lab.url + f"lab/api/settings/{PLUGIN}",
        headers=lab.headers,
        timeout=10,
        json={"raw": json.dumps({**SETTINGS, "maxTokens": 0})},
    )
    assert r.status_code == 204, r.text
    page.reload()
    _open_sidebar(page)
    expect(tab).to_have_attribute("aria-selected", "true")
    expect(conversation.locator(".lms-Turn")).to_have_count(2)
    expect(conversation.locator(".lms-Turn-user")).to_contain_text("Write a poem about the sea.")
    expect(answer.locator(".lms-Turn-content")).to_have_text(final, use_inner_text=True)
    expect(answer.locator(".lms-Stats")).to_contain_text(f"{SHORT_ANSWER} tokens")

    # Stop during a long answer: the server stops generating.
    message.fill("Tell me a very long story about a dragon and a knight.")
    page.get_by_role("button", name="Send").click()
    long_answer = conversation.locator(".lms-Turn-assistant").nth(1)
    page.wait_for_function(
        """() => {
            const a = document.querySelectorAll('.lms-Turn-assistant .lms-Turn-content');
            return a.length === 2 && a[1].innerText.length > 240;
        }""",
        timeout=300_000,
    )
    busy = _ps(lab)
    assert busy[0]["status"] == "generating", busy
    sidebar = page.locator("#lms-jupyter-sidebar")
    sidebar.screenshot(path=artifacts / "sidebar-mid-answer.png")
    page.get_by_role("button", name="Stop").click()
    idle = _wait_for(
        lambda: (
            (rows := _ps(lab)) and rows[0]["status"] == "idle" and rows[0]["queued"] == 0 and rows
        ),
        "the model to go idle",
        timeout=20,
    )
    assert idle[0]["identifier"] == MODEL
    expect(long_answer.locator(".lms-Stats")).to_contain_text("stopped")
    expect(page.get_by_role("button", name="Send")).to_be_enabled()
    stopped_text = long_answer.locator(".lms-Turn-content").inner_text()
    assert len(stopped_text) > 240
    page.screenshot(path=artifacts / "04-stopped.png")

    # New chat empties the conversation (and the saved state).
    page.get_by_role("button", name="New chat").click()
    expect(conversation.locator(".lms-Turn")).to_have_count(0)
    _wait_for(
        lambda: (c := _saved_chat(lab)) is not None and c["turns"] == [],
        "the empty conversation in the workspace",
    )

    # Unload.
    row.get_by_role("button", name=f"Unload {MODEL}").click()
    expect(row.get_by_role("button", name=f"Load {MODEL}")).to_be_visible()
    expect(row).to_contain_text("not loaded")
    assert _ps(lab) == []
    page.screenshot(path=artifacts / "05-unloaded.png")

    # No console errors, except the browser's own log line for the one deliberate 400
    # (the refused load above, which the sidebar showed as an alert).
    errors = [m for m in console if m["type"] in ("error", "pageerror")]
    expected = [
        m
        for m in errors
        if m["url"].split("?")[0].endswith(LOAD_URL_SUFFIX) and "status of 400" in m["text"]
    ]
    assert len(expected) == 1, errors
    assert [m for m in errors if m not in expected] == []


# -- push, the notebook, screenshots, reconnect ------------------------------------------------
# The second flow: the model list pushed over the event stream (no polling), the chat
# model picked from a dropdown by display name, an answer's code block inserted as a
# notebook cell, "Include active cell" sending the cell and its error, light and dark
# screenshots (copied to $LMS_JUPYTER_SCREENSHOTS for the README), and the list coming back
# by itself after the server restarts.

EVENTS_URL_SUFFIX = "lms/api/v0/events"
DISPLAY_NAME = "SmolLM2 135M Instruct"
# Greedy decoding makes the answer to CODE_PROMPT a fenced block (``print(42)``) that ends
# with EOS; max_tokens bounds it anyway.
CODE_PROMPT = "Write a Python code block that prints 42."
GREEDY = {"maxTokens": 60, "extraRequestFields": {"temperature": 0}}
CELL_SOURCE = "value = 41\nprint(undefined_name_42 + value)"
NOTEBOOK = {
    "cells": [
        {
            "cell_type": "code",
            "execution_count": 1,
            "id": "failing",
            "metadata": {},
            "source": CELL_SOURCE,
            "outputs": [
                {
                    "output_type": "error",
                    "ename": "NameError",
                    "evalue": "name 'undefined_name_42' is not defined",
                    "traceback": [
                        ("\u001b[0;31mNameError\u001b[0m: name 'undefined_name_42' is not defined")
                    ],
                }
            ],
        }
    ],
    "metadata": {
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "language_info": {"name": "python"},
    },
    "nbformat": 4,
    "nbformat_minor": 5,
}


def _show_sidebar(page) -> None:
    """Select the LM Studio tab unless the restored layout already shows it."""
    from playwright.sync_api import expect

    tab = page.get_by_role("tab", name="LM Studio")
    expect(tab).to_be_visible(timeout=120_000)
    if tab.get_attribute("aria-selected") != "true":
        tab.click()
    expect(tab).to_have_attribute("aria-selected", "true")


def _put_settings(lab, values: dict) -> None:
    r = httpx.put(
        lab.url + f"lab/api/settings/{PLUGIN}",
        headers=lab.headers,
        timeout=10,
        json={"raw": json.dumps(values)},
    )
    assert r.status_code == 204, r.text


def _load_over_http(lab) -> None:
    r = httpx.post(
        lab.url + LOAD_URL_SUFFIX,
        headers=lab.headers,
        timeout=120,
        json={"model": MODEL, "force": True},
    )
    assert r.status_code == 200, r.text


def _unload_all(lab) -> None:
    for row in _ps(lab):
        httpx.post(
            lab.url + "lms/api/v1/models/unload",
            headers=lab.headers,
            timeout=60,
            json={"instance_id": row["identifier"]},
        )


def _save_screenshot(page, sidebar, artifacts: Path, name: str) -> None:
    """The sidebar alone, into the artifacts and $LMS_JUPYTER_SCREENSHOTS (docs/)."""
    path = artifacts / name
    sidebar.screenshot(path=path)
    keep = os.environ.get("LMS_JUPYTER_SCREENSHOTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(keep) / name)


def _widen_sidebar(page, width: int = 420) -> None:
    """Drag the left panel's splitter so answers and code blocks have room."""
    handle = page.locator("#jp-main-split-panel > .lm-SplitPanel-handle").first
    box = handle.bounding_box()
    if box is None:
        return
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.down()
    page.mouse.move(box["x"] + width - 250, box["y"] + box["height"] / 2, steps=5)
    page.mouse.up()


def _use_theme(page, theme: str) -> None:
    """Through the command palette. A modal palette closes when something else takes the
    focus (a widget JupyterLab activates), so a try that loses it starts again."""
    from playwright.sync_api import Error, expect

    palette = page.get_by_role("textbox", name="SEARCH")
    for attempt in range(3):
        try:
            page.keyboard.press("Control+Shift+C")
            expect(palette).to_be_focused(timeout=10_000)
            palette.fill(f"Use Theme: {theme}", timeout=10_000)
            active = page.locator(".lm-CommandPalette-item.lm-mod-active")
            expect(active).to_contain_text(theme, timeout=10_000)
            page.keyboard.press("Enter")
            break
        except (AssertionError, Error):
            if attempt == 2:
                raise
            page.keyboard.press("Escape")
    light = "true" if "Light" in theme else "false"
    expect(page.locator(f"body[data-jp-theme-light='{light}']")).to_have_count(1)
    page.wait_for_timeout(500)  # the theme's CSS applies after the attribute


def test_sidebar_push_code_blocks_and_active_cell(lab, browser_page, artifacts):
    from playwright.sync_api import expect

    page, console = browser_page
    _unload_all(lab)
    _put_settings(lab, GREEDY)
    r = httpx.put(
        lab.url + "api/contents/context.ipynb",
        headers=lab.headers,
        timeout=10,
        json={"type": "notebook", "format": "json", "content": NOTEBOOK},
    )
    assert r.status_code in (200, 201), r.text
    requests: list[str] = []
    page.on("request", lambda req: requests.append(req.url))

    page.goto(f"{lab.url}lab/tree/context.ipynb?token={lab.token}")
    cells = page.locator(".jp-Notebook .jp-Cell")
    expect(cells).to_have_count(1, timeout=120_000)
    _show_sidebar(page)
    _widen_sidebar(page)
    models = page.get_by_role("list", name="Models")
    row = models.get_by_role("listitem").filter(has_text=MODEL)
    expect(row).to_contain_text("not loaded")
    expect(row.locator(".lms-Model-name")).to_have_text(DISPLAY_NAME)
    live = page.get_by_role("status", name="Model events")
    expect(live).to_have_text("live")

    # A load over HTTP, not from this page, shows up pushed: no ps request, ever.
    _load_over_http(lab)
    expect(row.get_by_role("button", name=f"Unload {MODEL}")).to_be_visible()
    expect(row).to_contain_text("idle · queued 0")
    # ... and so does the work of a request from elsewhere (the status, the queue)
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Tell a long story."}],
        "max_tokens": 400,
        "logit_bias": {"2": -100},
        "stream": True,
    }
    with (
        httpx.Client(timeout=120) as other,
        other.stream(
            "POST", lab.url + "lms/v1/chat/completions", headers=lab.headers, json=body
        ) as answer,
    ):
        assert answer.status_code == 200
        lines = answer.iter_lines()
        expect(row.locator(".lms-Instance")).to_contain_text("queued 1")
        assert next(lines)
    expect(row).to_contain_text("idle · queued 0")
    models_fetched = sum(EVENTS_URL_SUFFIX not in u and "lms/api/v0/models" in u for u in requests)
    page.wait_for_timeout(4000)  # the old sidebar polled every 2 s
    assert [u for u in requests if "lms/api/v0/ps" in u] == []
    assert sum("lms/api/v0/models" in u for u in requests) == models_fetched
    assert sum(EVENTS_URL_SUFFIX in u for u in requests) == 1  # one stream, still open

    # The chat model is picked from a dropdown, loaded first, by its display name.
    picker = page.get_by_role("combobox", name="Chat model")
    expect(picker).to_have_value(MODEL)
    first = picker.locator("option").first
    expect(first).to_have_attribute("value", MODEL)
    expect(first).to_have_text(DISPLAY_NAME)
    expect(picker.locator("optgroup").first).to_have_attribute("label", "Loaded")

    # A Markdown answer with a code block: highlighted, with Copy and Insert as cell below.
    page.get_by_role("button", name="New chat").click()
    message = page.get_by_role("textbox", name="Message")
    conversation = page.get_by_role("region", name="Conversation")
    message.fill(CODE_PROMPT)
    message.press("Enter")
    answer = conversation.locator(".lms-Turn-assistant").last
    expect(answer.locator(".lms-Stats")).to_contain_text("tok/s", timeout=240_000)
    block = answer.locator(".lms-CodeBlock").first
    expect(block).to_contain_text("print(42)")
    expect(block.locator("pre span").first).to_be_attached()  # highlighted tokens
    expect(block.get_by_role("button", name="Copy")).to_be_enabled()
    sidebar = page.locator("#lms-jupyter-sidebar")
    expect(row).to_contain_text("idle · queued 0")
    _save_screenshot(page, sidebar, artifacts, "sidebar-light.png")
    # The same sidebar in the dark theme (theme variables only, no colours of its own).
    background = sidebar.evaluate("n => getComputedStyle(n).backgroundColor")
    _use_theme(page, "JupyterLab Dark")
    assert sidebar.evaluate("n => getComputedStyle(n).backgroundColor") != background
    _save_screenshot(page, sidebar, artifacts, "sidebar-dark.png")
    _use_theme(page, "JupyterLab Light")
    assert sidebar.evaluate("n => getComputedStyle(n).backgroundColor") == background

    insert = block.get_by_role("button", name="Insert as cell below")
    expect(insert).to_be_enabled()
    insert.click()
    expect(cells).to_have_count(2)
    expect(cells.nth(1)).to_contain_text("print(42)")
    expect(cells.nth(0)).to_contain_text("undefined_name_42")
    block.get_by_role("button", name="Copy").click()
    expect(block.get_by_role("status")).to_have_text("copied")

    # "Include active cell": the request carries the cell's source and its error.
    cells.nth(0).locator(".jp-InputArea-prompt").click()  # the failing cell, whole
    toggle = page.get_by_role("checkbox", name="Include active cell")
    toggle.check()
    expect(page.locator(".lms-Toggle")).to_contain_text("cell [1] · error: NameError")
    sent: list[dict] = []

    def record(route):
        sent.append(route.request.post_data_json)
        route.continue_()

    def is_chat(url: str) -> bool:
        return "lms/v1/chat/completions" in url

    page.route(is_chat, record)
    message.fill("Why does this fail?")
    with page.expect_request(lambda req: is_chat(req.url) and req.method == "POST") as seen:
        page.get_by_role("button", name="Send").click()
    assert seen.value.post_data_json["messages"][-1]["content"].startswith("Why does this fail?")
    answer = conversation.locator(".lms-Turn-assistant").nth(1)
    expect(answer.locator(".lms-Turn-content")).not_to_be_empty(timeout=240_000)
    page.get_by_role("button", name="Stop").click()  # the answer itself does not matter
    expect(answer.locator(".lms-Stats")).to_contain_text("stopped")
    page.unroute(is_chat)
    assert len(sent) == 1, "the request was not intercepted"
    last = sent[0]["messages"][-1]
    assert last["role"] == "user"
    assert last["content"].startswith("Why does this fail?\n\n")
    assert CELL_SOURCE in last["content"]
    assert "NameError: name 'undefined_name_42' is not defined" in last["content"]
    assert "\u001b" not in last["content"]  # terminal colours stripped
    assert sent[0]["model"] == MODEL and sent[0]["max_tokens"] == GREEDY["maxTokens"]
    question = conversation.locator(".lms-Turn-user").nth(1)
    expect(question.locator(".lms-Turn-text")).to_have_text("Why does this fail?")
    expect(question.locator(".lms-Context")).to_contain_text("Notebook context")

    assert [m for m in console if m["type"] == "pageerror"] == []
    _unload_all(lab)


def _restart(lab) -> None:
    """Stop the server and start it again on the same port, token and folders."""
    import conftest

    lab.stop()
    args, options = lab.restart_args
    port = lab.port
    original = conftest.free_port
    conftest.free_port = lambda: port
    try:
        lab.__init__(*args, **options)
    finally:
        conftest.free_port = original
    lab.restart_args = (args, options)


def test_sidebar_reconnects_after_a_server_restart(lab, browser_page):
    from playwright.sync_api import expect

    page, console = browser_page
    _unload_all(lab)
    _load_over_http(lab)
    # a fresh workspace: no notebook (and no kernel) to complain about the restart
    page.goto(f"{lab.url}lab/workspaces/restart?token={lab.token}")
    _show_sidebar(page)
    row = page.get_by_role("list", name="Models").get_by_role("listitem").filter(has_text=MODEL)
    live = page.get_by_role("status", name="Model events")
    expect(live).to_have_text("live")
    expect(row.get_by_role("button", name=f"Unload {MODEL}")).to_be_visible()

    lab.proc.terminate()  # the stream drops; the page keeps trying
    expect(live).to_have_text("reconnecting…", timeout=30_000)
    lab.proc.wait(timeout=30)
    _restart(lab)
    # The new server has nothing loaded: the list says so without a reload ...
    expect(live).to_have_text("live", timeout=90_000)
    expect(row).to_contain_text("not loaded")
    expect(row.get_by_role("button", name=f"Load {MODEL}")).to_be_visible()
    # ... and the new stream pushes again.
    _load_over_http(lab)
    expect(row.get_by_role("button", name=f"Unload {MODEL}")).to_be_visible()
    assert [m for m in console if m["type"] == "pageerror"] == []
    _unload_all(lab)
