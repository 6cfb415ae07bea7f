"""What every browser test shares: Debian's chromium driven by Playwright (never a browser
download), the built extension put first on JUPYTER_PATH, JupyterLab settings files, the
artifacts kept for a failed run, and a page whose console is recorded."""

from __future__ import annotations

import json
import os
import shutil
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

import lms_jupyter

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
BUILT = Path(lms_jupyter.__file__).parent / "labextension"


def require_browser(built_file: str = "package.json") -> None:
    """Skip (fail on CI) unless chromium, playwright and the built extension are there."""
    missing = []
    if not CHROMIUM.exists():
        missing.append("chromium (apt-get install -y chromium; scripts/dev.sh test does it)")
    if not (BUILT / built_file).exists():
        missing.append(f"the built extension in {BUILT} (jlpm build:prod in labextension/)")
    try:
        import playwright  # noqa: F401
    except ImportError:
        missing.append("the playwright package (pip install -e '.[test]')")
    if missing:
        message = "browser test needs: " + "; ".join(missing)
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


def extension_data_dir(root: Path) -> Path:
    """A JUPYTER_PATH entry holding this checkout's built extension, so an older installed
    copy cannot shadow it."""
    data = root / "jupyter-path"
    (data / "labextensions").mkdir(parents=True)
    (data / "labextensions" / "lms-jupyter").symlink_to(BUILT)
    return data


def write_settings(folder: Path, package: str, plugin: str, values: dict) -> None:
    target = folder / package / f"{plugin}.jupyterlab-settings"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(values))


@dataclass
class LabSetup:
    """The folders of a test's ``jupyter lab`` and the JupyterServer options that use them."""

    notebooks: Path
    settings: Path
    options: dict


def lab_setup(root: Path, *extra_args: str) -> LabSetup:
    """Folders under ``root`` for ``jupyter lab``: this checkout's extension first on
    JUPYTER_PATH, user settings (JupyterLab's news toast and update check off: no network
    here), workspaces, and the notebooks it serves; ``extra_args`` go to the server."""
    settings = root / "user-settings"
    write_settings(
        settings,
        "@jupyterlab/apputils-extension",
        "notification",
        {"fetchNews": "false", "checkForUpdates": False},
    )
    workspaces = root / "workspaces"
    workspaces.mkdir()
    notebooks = root / "notebooks"
    notebooks.mkdir()
    options = {
        "app": "jupyterlab",
        "env": {"JUPYTER_PATH": str(extension_data_dir(root))},
        "extra_args": [
            f"--LabApp.user_settings_dir={settings}",
            f"--LabApp.workspaces_dir={workspaces}",
            *extra_args,
        ],
    }
    return LabSetup(notebooks, settings, options)


def artifacts_folder(tmp_path: Path, name: str):
    """A fixture body: a folder for screenshots and logs, copied to
    ``$LMS_JUPYTER_ARTIFACTS/<name>`` when that is set."""
    folder = tmp_path / "artifacts"
    folder.mkdir()
    yield folder
    keep = os.environ.get("LMS_JUPYTER_ARTIFACTS")
    if keep:
        shutil.copytree(folder, Path(keep) / name, dirs_exist_ok=True)


@contextmanager
def chromium_page(lab, artifacts: Path):
    """A chromium page and the list its console messages and page errors go to; on the way
    out the console, a last screenshot and the server's log land in ``artifacts``."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 860})
            page.set_default_timeout(90_000)  # JupyterLab boots slowly on 2 busy cores
            console: list[dict] = []
            page.on(
                "console",
                lambda m: console.append(
                    {"type": m.type, "text": m.text, "url": (m.location or {}).get("url", "")}
                ),
            )
            page.on(
                "pageerror",
                lambda e: console.append({"type": "pageerror", "text": str(e), "url": ""}),
            )
            try:
                yield page, console
            finally:
                (artifacts / "console.json").write_text(json.dumps(console, indent=1))
                page.screenshot(path=artifacts / "99-last.png")
        finally:
            browser.close()
            shutil.copy(lab.log_path, artifacts / "server.log")
