"""Inline (ghost-text) completion in a real browser: Debian's chromium driven by Playwright
against ``jupyter lab`` on loopback under a non-root base_url with a token, SmolLM2 loaded
and the extension built from this checkout (first on JUPYTER_PATH).

Typing in a notebook code cell, and in the file editor, shows ghost text from the model that
Tab accepts; typing on
while a completion streams aborts its request, and the model is idle again in
``/lms/api/v0/ps`` within a second (the next request waits out a long debounce, so what
frees the slot can only be the abort).

Chromium comes from ``apt-get install chromium``; never a download.
"""

from __future__ import annotations

import json
import time

import httpx
import pytest
from browser_session import (
    artifacts_folder,
    chromium_page,
    lab_setup,
    require_browser,
    write_settings,
)
from conftest import EOS_ID, MODEL, JupyterServer
from conftest import wait_for as _wait_for

TYPED = "numbers = [1, 2, 3, 4, 5]\ntotal = "
NO_EOS = {"logit_bias": {str(EOS_ID): -100}}  # SmolLM2 must always say something
# ... and for the long completion, no other special token either (they render as nothing)
ONLY_TEXT = {"logit_bias": {str(t): -100 for t in range(17)}}

pytestmark = pytest.mark.timeout(420)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    require_browser("schemas/lms-jupyter/completer.json")
    root = tmp_path_factory.mktemp("lab")
    models = tmp_path_factory.mktemp("no-extra-models")  # only the embedded SmolLM2
    setup = lab_setup(root)
    notebooks, settings = setup.notebooks, setup.settings
    (notebooks / "script.py").write_text("")
    (notebooks / "t.ipynb").write_text(
        json.dumps(
            {
                "cells": [
                    {
                        "cell_type": "code",
                        "source": "",
                        "metadata": {},
                        "outputs": [],
                        "execution_count": None,
                    }
                ],
                "metadata": {
                    "kernelspec": {
                        "name": "python3",
                        "display_name": "Python 3",
                        "language": "python",
                    }
                },
                "nbformat": 4,
                "nbformat_minor": 5,
            }
        )
    )
    server = JupyterServer(notebooks, models, **setup.options)
    server.settings_dir = settings
    r = httpx.post(
        server.url + "lms/api/v1/models/load",
        headers=server.headers,
        json={"model": MODEL},
        timeout=120,
    )
    assert r.status_code == 200, r.text
    yield server
    server.stop()


@pytest.fixture()
def artifacts(tmp_path):
    yield from artifacts_folder(tmp_path, "inline-completion")


@pytest.fixture()
def browser_page(lab, artifacts):
    with chromium_page(lab, artifacts) as session:
        yield session


def _busy(lab) -> bool:
    r = httpx.get(lab.url + "lms/api/v0/ps", headers=lab.headers, timeout=10)
    r.raise_for_status()
    (row,) = [m for m in r.json()["data"] if m["identifier"] == MODEL]
    return row["status"] != "idle" or row["queued"] > 0


# the cell's own text, without the ghost text's widgets (they sit inside the editor's DOM)
EDITOR_TEXT = """() => {
    const content = document.querySelector('.jp-Notebook .jp-Cell .cm-content').cloneNode(true);
    content.querySelectorAll('[class^="jp-GhostText"]').forEach(e => e.remove());
    return [...content.querySelectorAll('.cm-line')].map(l => l.textContent).join('\\n');
}"""


def _open_cell(page, lab, settings: dict):
    """Open the notebook with these completer settings and type TYPED into its cell."""
    from playwright.sync_api import expect

    write_settings(lab.settings_dir, "lms-jupyter", "completer", settings)
    page.goto(f"{lab.url}lab/tree/t.ipynb?reset&token={lab.token}")
    editor = page.locator(".jp-Notebook .jp-Cell .cm-content").first
    expect(editor).to_be_visible(timeout=120_000)
    # the kernel is up (so nothing steals the focus later)
    _wait_for(
        lambda: any(
            k["execution_state"] == "idle"
            for k in httpx.get(lab.url + "api/kernels", headers=lab.headers, timeout=10).json()
        ),
        "the kernel",
        120,
    )
    editor.click()
    page.keyboard.type(TYPED)
    assert page.evaluate(EDITOR_TEXT) == TYPED
    return page.locator(".jp-GhostText")


SHORT = {
    "debounceMs": 100,
    "maxLines": 1,
    "maxTokens": 12,
    "temperature": 0,
    "extraRequestFields": NO_EOS,
}


def _accept_with_tab(page, lab, ghost, text_js: str, screenshot) -> str:
    """Wait for the whole ghost text, press Tab, check the editor now holds it; its text."""
    from playwright.sync_api import expect

    expect(ghost).to_have_count(1, timeout=60_000)
    expect(ghost).not_to_have_text("")
    # the completion has finished streaming once the model is idle again
    _wait_for(lambda: not _busy(lab), "the completion to finish")
    shown = ghost.inner_text()
    assert shown.strip(), shown
    page.screenshot(path=screenshot)
    page.keyboard.press("Tab")
    accepted = _wait_for(lambda: (t := page.evaluate(text_js)) != TYPED and t, "Tab")
    assert accepted == TYPED + shown, (accepted, shown)
    return shown


def _no_extension_errors(console) -> None:
    errors = [
        m for m in console if m["type"] in ("error", "pageerror") and "lms-jupyter" in m["text"]
    ]
    assert not errors, errors


def test_ghost_text_that_tab_accepts(lab, browser_page, artifacts):

    page, console = browser_page
    ghost = _open_cell(page, lab, SHORT)
    _accept_with_tab(page, lab, ghost, EDITOR_TEXT, artifacts / "01-ghost-text.png")
    page.screenshot(path=artifacts / "02-accepted.png")
    _no_extension_errors(console)


def test_typing_on_cancels_the_request(lab, browser_page, artifacts):
    from playwright.sync_api import expect

    page, _console = browser_page
    # a long completion, and a debounce long enough that the next request cannot start
    # before the check: the slot goes free only if the typing aborted the stream
    ghost = _open_cell(
        page,
        lab,
        {
            "debounceMs": 1500,
            "maxLines": 0,
            "maxTokens": 2000,
            "temperature": 0.7,
            "extraRequestFields": ONLY_TEXT,
        },
    )
    expect(ghost).to_have_count(1, timeout=60_000)
    first = ghost.inner_text()
    _wait_for(lambda: len(ghost.inner_text()) > len(first) + 20, "the ghost text to stream")
    assert _busy(lab), "the completion should still be generating"
    page.keyboard.type("#")
    typed = time.monotonic()
    _wait_for(lambda: not _busy(lab) or time.monotonic() - typed > 1.0, "the abort")
    assert not _busy(lab), "the model was still busy a second after the user typed on"
    page.screenshot(path=artifacts / "03-cancelled.png")


# the file editor's text, without the ghost text (as EDITOR_TEXT for a cell)
FILE_TEXT = """() => {
    const content = document.querySelector('.jp-FileEditor .cm-content').cloneNode(true);
    content.querySelectorAll('[class^="jp-GhostText"]').forEach(e => e.remove());
    return [...content.querySelectorAll('.cm-line')].map(l => l.textContent).join('\\n');
}"""


def test_ghost_text_in_the_file_editor(lab, browser_page, artifacts):
    """A .py file in JupyterLab's file editor gets the same ghost text (no cells above it,
    no kernel), and Tab accepts it."""
    from playwright.sync_api import expect

    page, console = browser_page
    write_settings(lab.settings_dir, "lms-jupyter", "completer", SHORT)
    page.goto(f"{lab.url}lab/tree/script.py?reset&token={lab.token}")
    editor = page.locator(".jp-FileEditor .cm-content").first
    expect(editor).to_be_visible(timeout=120_000)
    editor.click()
    page.keyboard.type(TYPED)
    assert page.evaluate(FILE_TEXT) == TYPED
    ghost = page.locator(".jp-FileEditor .jp-GhostText")
    _accept_with_tab(page, lab, ghost, FILE_TEXT, artifacts / "04-file-editor.png")
    _no_extension_errors(console)
