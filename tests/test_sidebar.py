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
import time
from pathlib import Path

import httpx
import pytest

import lms_jupyter
from conftest import MODEL, JupyterServer

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
BUILT = Path(lms_jupyter.__file__).parent / "labextension"
PLUGIN = "lms-jupyter:plugin"
LOAD_URL_SUFFIX = "lms/api/v1/models/load"

# The first answer must end by itself: EOS (id 2) banned, so exactly SHORT_ANSWER tokens.
SHORT_ANSWER = 32
SETTINGS = {"maxTokens": SHORT_ANSWER, "extraRequestFields": {"logit_bias": {"2": -100}}}

pytestmark = pytest.mark.timeout(420)


def _require_tools():
    missing = []
    if not CHROMIUM.exists():
        missing.append("chromium (apt-get install -y chromium; scripts/dev.sh test does it)")
    if not (BUILT / "package.json").exists():
        missing.append(f"the built extension in {BUILT} (pip install -e . or jlpm build:prod "
                       "in labextension/)")
    try:
        import playwright  # noqa: F401
    except ImportError:
        missing.append("the playwright package (pip install -e '.[test]')")
    if missing:
        message = "browser test needs: " + "; ".join(missing)
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """``jupyter lab`` with lms_jupyter, serving the extension built in this checkout (put
    first on JUPYTER_PATH, so an older installed copy cannot shadow it)."""
    _require_tools()
    root = tmp_path_factory.mktemp("lab")
    models = tmp_path_factory.mktemp("no-extra-models")  # only the embedded SmolLM2
    data = root / "jupyter-path"
    (data / "labextensions").mkdir(parents=True)
    (data / "labextensions" / "lms-jupyter").symlink_to(BUILT)
    settings = root / "user-settings"
    _write_settings(settings, "lms-jupyter", "plugin", SETTINGS)
    # JupyterLab's "official news?" toast and update check stay quiet (no network here).
    _write_settings(settings, "@jupyterlab/apputils-extension", "notification",
                    {"fetchNews": "false", "checkForUpdates": False})
    workspaces = root / "workspaces"
    workspaces.mkdir()
    notebooks = root / "notebooks"
    notebooks.mkdir()
    server = JupyterServer(
        notebooks, models, app="jupyterlab", env={"JUPYTER_PATH": str(data)},
        extra_args=[f"--LabApp.user_settings_dir={settings}",
                    f"--LabApp.workspaces_dir={workspaces}",
                    # A tiny memory budget: an explicit load is refused until forced.
                    "--ModelManager.memory_limit_mb=1"])
    yield server
    server.stop()


def _write_settings(folder: Path, package: str, plugin: str, values: dict) -> None:
    target = folder / package / f"{plugin}.jupyterlab-settings"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(values))


@pytest.fixture()
def artifacts(tmp_path):
    folder = tmp_path / "artifacts"
    folder.mkdir()
    yield folder
    keep = os.environ.get("LMS_JUPYTER_ARTIFACTS")
    if keep:
        shutil.copytree(folder, Path(keep) / "sidebar", dirs_exist_ok=True)


@pytest.fixture()
def browser_page(lab, artifacts):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 860})
            page.set_default_timeout(90_000)  # JupyterLab boots slowly on 2 busy cores
            console: list[dict] = []
            page.on("console", lambda m: console.append(
                {"type": m.type, "text": m.text, "url": (m.location or {}).get("url", "")}))
            page.on("pageerror", lambda e: console.append(
                {"type": "pageerror", "text": str(e), "url": ""}))
            try:
                yield page, console
            finally:
                (artifacts / "console.json").write_text(json.dumps(console, indent=1))
                page.screenshot(path=artifacts / "99-last.png")
        finally:
            browser.close()
            shutil.copy(lab.log_path, artifacts / "server.log")


def _ps(lab) -> list[dict]:
    r = httpx.get(lab.url + "lms/api/v0/ps", headers=lab.headers, timeout=10)
    r.raise_for_status()
    return r.json()["data"]


def _wait_for(predicate, what: str, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _saved_chat(lab) -> dict | None:
    """The conversation as the state database saved it into the workspace file."""
    r = httpx.get(lab.url + "lab/api/workspaces", headers=lab.headers, timeout=10)
    r.raise_for_status()
    for workspace in r.json()["workspaces"]["values"]:
        chat = workspace.get("data", {}).get("lms-jupyter:chat")
        if chat is not None:
            return chat
    return None


def _open_sidebar(page) -> None:
    """Through the command palette's "LM Studio: Open" (clicking the tab would toggle)."""
    from playwright.sync_api import expect

    # JupyterLab has booted (after a reload too) once its sidebar tabs are there
    expect(page.get_by_role("tab", name="LM Studio")).to_be_visible(timeout=120_000)
    palette = page.get_by_role("textbox", name="SEARCH")
    deadline = time.monotonic() + 60
    while True:  # the shortcut works once JupyterLab has registered it
        page.keyboard.press("Control+Shift+C")
        try:
            expect(palette).to_be_focused(timeout=1000)
            break
        except AssertionError:
            if time.monotonic() > deadline:
                raise
    palette.fill("LM Studio: Open")
    expect(page.locator(".lm-CommandPalette-item.lm-mod-active")).to_contain_text(
        "LM Studio: Open")
    page.keyboard.press("Enter")


def test_sidebar_end_to_end(lab, browser_page, artifacts):
    from playwright.sync_api import expect

    page, console = browser_page
    page.goto(f"{lab.url}lab?token={lab.token}")

    # The tab: an icon whose accessible name is the title.
    tab = page.get_by_role("tab", name="LM Studio")
    tab.click()
    expect(tab).to_have_attribute("aria-selected", "true")
    models = page.get_by_role("list", name="Models")
    row = models.get_by_role("listitem").filter(has_text=MODEL)
    expect(row).to_be_visible()
    expect(row).to_contain_text("not loaded")
    expect(row).to_contain_text("Q4_1")
    expect(row).to_contain_text("MB")
    page.screenshot(path=artifacts / "01-models.png")

    # Load: the 1 MB budget refuses it with the API's own message, "Load anyway" forces it.
    refusal = httpx.post(lab.url + LOAD_URL_SUFFIX, headers=lab.headers, json={"model": MODEL},
                         timeout=30)
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
    expect(stats).to_contain_text("tok/s", timeout=120_000)
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
    saved = _wait_for(lambda: (c := _saved_chat(lab)) and len(c["turns"]) == 2 and c,
                      "the conversation in the workspace")
    assert saved["turns"][1]["content"].strip()
    assert saved["model"] == MODEL
    # A long answer next: no token limit (EOS stays banned), so it only ends on Stop.
    r = httpx.put(lab.url + f"lab/api/settings/{PLUGIN}", headers=lab.headers, timeout=10,
                  json={"raw": json.dumps({**SETTINGS, "maxTokens": 0})})
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
        }""", timeout=120_000)
    busy = _ps(lab)
    assert busy[0]["status"] == "generating", busy
    sidebar = page.locator("#lms-jupyter-sidebar")
    sidebar.screenshot(path=artifacts / "sidebar-mid-answer.png")
    page.get_by_role("button", name="Stop").click()
    idle = _wait_for(lambda: (rows := _ps(lab)) and rows[0]["status"] == "idle"
                     and rows[0]["queued"] == 0 and rows, "the model to go idle", timeout=20)
    assert idle[0]["identifier"] == MODEL
    expect(long_answer.locator(".lms-Stats")).to_contain_text("stopped")
    expect(page.get_by_role("button", name="Send")).to_be_enabled()
    stopped_text = long_answer.locator(".lms-Turn-content").inner_text()
    assert len(stopped_text) > 240
    page.screenshot(path=artifacts / "04-stopped.png")

    # New chat empties the conversation (and the saved state).
    page.get_by_role("button", name="New chat").click()
    expect(conversation.locator(".lms-Turn")).to_have_count(0)
    _wait_for(lambda: (c := _saved_chat(lab)) is not None and c["turns"] == [],
              "the empty conversation in the workspace")

    # Unload.
    row.get_by_role("button", name=f"Unload {MODEL}").click()
    expect(row.get_by_role("button", name=f"Load {MODEL}")).to_be_visible()
    expect(row).to_contain_text("not loaded")
    assert _ps(lab) == []
    page.screenshot(path=artifacts / "05-unloaded.png")

    # No console errors, except the browser's own log line for the one deliberate 400
    # (the refused load above, which the sidebar showed as an alert).
    errors = [m for m in console if m["type"] in ("error", "pageerror")]
    expected = [m for m in errors if m["url"].split("?")[0].endswith(LOAD_URL_SUFFIX)
                and "status of 400" in m["text"]]
    assert len(expected) == 1, errors
    assert [m for m in errors if m not in expected] == []
