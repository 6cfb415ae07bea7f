"""``lms-jupyter chat`` in a real pseudo-terminal (pexpect) against a real server: a
streamed answer, Ctrl+C mid-answer back at the prompt with the model idle in ``ps``,
a second question sent with the first in its history, slash commands, Ctrl+C twice and
Ctrl+D to quit, and ``-p`` for pipes."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import httpx
import pytest

pexpect = pytest.importorskip("pexpect")

from conftest import MODEL  # noqa: E402

pytestmark = pytest.mark.timeout(300)

PROMPT = "\r\n> "
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STATS = re.compile(r"Prompt Tokens: (\d+)\r?\n\s+Predicted Tokens: (\d+)")


def command(server, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "lms_jupyter.cli",
        "chat",
        MODEL,
        "--url",
        server.url,
        "--token",
        server.token,
        *extra,
    ]


def env() -> dict:
    return {
        **os.environ,
        "NO_COLOR": "1",
        "PYTHONPATH": ROOT,
        "TERM": "dumb",
        "PYTHONUNBUFFERED": "1",
    }


def spawn(server, *extra: str):
    argv = command(server, *extra)
    child = pexpect.spawn(
        argv[0], argv[1:], env=env(), encoding="utf-8", timeout=90, dimensions=(40, 200)
    )
    child.expect("Chatting with")
    child.expect("> ")
    return child


def ps_status(server) -> str:
    rows = httpx.get(server.url + "lms/api/v0/ps", headers=server.headers, timeout=30).json()[
        "data"
    ]
    return next(r["status"] for r in rows if r["identifier"] == MODEL)


def test_streamed_answer_interrupt_and_memory(server):
    child = spawn(server, "--max-tokens", "6", "--temperature", "0")
    try:
        child.sendline("Say hello.")
        child.expect(STATS)
        first_prompt, first_answer = map(int, child.match.groups())
        assert 0 < first_answer <= 6
        child.expect("> ")
        # a second question carries the first exchange in its prompt
        child.sendline("Say it again.")
        child.expect(STATS)
        second_prompt = int(child.match.group(1))
        assert second_prompt >= first_prompt + first_answer
        child.expect("> ")
        child.sendline("/help")
        child.expect("/system TEXT")
        child.expect("> ")
        child.sendline("/clear")
        child.expect(r"\(conversation cleared\)")
        child.expect("> ")
        child.sendline("Say hello.")
        child.expect(STATS)
        assert int(child.match.group(1)) == first_prompt  # nothing remembered after /clear
        child.expect("> ")
        child.sendeof()
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0


def test_ctrl_c_stops_the_answer_and_keeps_the_chat(server):
    child = spawn(server, "--max-tokens", "2000", "--temperature", "0.8")
    try:
        child.sendline("Write a very long story about a dragon, a castle and a knight.")
        child.expect(r"\w+ \w+ \w+ \w+")  # the answer streams
        assert ps_status(server) in ("generating", "processingPrompt")
        interrupted = time.monotonic()
        child.sendintr()
        child.expect(r"\(interrupted\)")
        child.expect("> ")
        back = time.monotonic() - interrupted
        assert back < 0.5, f"back at the prompt after {back:.2f} s"
        deadline = time.monotonic() + 10
        while ps_status(server) != "idle":  # the server stopped generating
            assert time.monotonic() < deadline, "the model kept generating"
            time.sleep(0.1)
        # still chatting: the interrupted answer is in the history
        child.sendline("/model")
        child.expect(f"Model: {MODEL}")
        child.expect("> ")
        child.sendintr()  # Ctrl+C at the prompt: a hint, then a second one quits
        child.expect("Ctrl\\+C again")
        child.sendintr()
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0


def test_one_shot_prompt_for_pipes(server):
    done = subprocess.run(
        command(server, "-p", "Say hi.", "--max-tokens", "5", "--temperature", "0"),
        env=env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip()
    assert "Tokens/Second:" in done.stderr and "Time to First Token:" in done.stderr
    quiet = subprocess.run(
        command(server, "-p", "Say hi.", "--max-tokens", "5", "--temperature", "0", "--no-stats"),
        env=env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert quiet.returncode == 0 and quiet.stdout == done.stdout
    assert "Tokens/Second" not in quiet.stderr
    missing = subprocess.run(
        command(server, "-p", "Hi")[:4]
        + ["no-such-model", "--url", server.url, "--token", server.token, "-p", "Hi"],
        env=env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert missing.returncode != 0 and "no-such-model" in missing.stderr
    assert "Traceback" not in missing.stderr
