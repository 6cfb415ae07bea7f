"""The interactive loop of ``lms-jupyter chat``: prompt, slash commands, Ctrl+C.

Ctrl+C while an answer streams interrupts that prediction and comes back to the prompt
(the chat goes on); Ctrl+C at the prompt twice in a row, Ctrl+D, or ``/exit`` quits.
``input()`` gives readline's line editing and history when the ``readline`` module is
there (it is on Linux and macOS).
"""

from __future__ import annotations

import sys

from lms_jupyter.cli.terminal_chat.session import ChatSession, stats_text

PROMPT = "> "
HELP = """Commands:
  /help           this help
  /clear          forget the conversation (the system prompt stays)
  /model NAME     chat with another model from now on (the conversation stays)
  /system TEXT    set the system prompt (/system alone removes it)
  /exit           quit (also Ctrl+D, or Ctrl+C twice at the prompt)
Ctrl+C while the model answers stops that answer and returns here."""


class Repl:
    def __init__(self, session: ChatSession, stats: bool = True, out=None, err=None, models=None):
        self.session = session
        self.stats = stats
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self.models = models  # callable: known model names (for /model's check)

    def write(self, text: str) -> None:
        self.out.write(text)
        self.out.flush()

    def note(self, text: str) -> None:
        self.err.write(text + "\n")
        self.err.flush()

    def answer(self, question: str) -> None:
        answer = self.session.ask(question, self.write)
        self.write("\n")
        if answer.interrupted:
            self.note("(interrupted)")
        if self.stats:
            self.note(stats_text(answer))

    def command(self, line: str) -> bool:
        """Run a slash command; False means quit."""
        name, _, arg = line[1:].partition(" ")
        arg = arg.strip()
        if name in ("exit", "quit", "bye"):
            return False
        if name == "help":
            self.note(HELP)
        elif name == "clear":
            self.session.clear()
            self.note("(conversation cleared)")
        elif name == "model":
            if not arg:
                self.note(f"Model: {self.session.model}. Use /model NAME to switch.")
            else:
                self.session.model = arg
                self.note(f"(now chatting with {arg})")
        elif name == "system":
            self.session.system = arg or None
            self.note("(system prompt set)" if arg else "(system prompt removed)")
        else:
            self.note(f"Unknown command /{name}. Type /help.")
        return True

    def run(self) -> int:
        try:
            import readline  # noqa: F401 - line editing and history for input()
        except ImportError:
            pass
        self.note(
            f"Chatting with {self.session.model}. Type /help for commands, "
            "Ctrl+C to stop an answer, Ctrl+D to quit."
        )
        interrupts = 0
        while True:
            try:
                line = input(PROMPT)
            except EOFError:
                self.write("\n")
                return 0
            except KeyboardInterrupt:
                interrupts += 1
                if interrupts >= 2:
                    self.write("\n")
                    return 0
                self.write("\n")
                self.note("(Ctrl+C again or Ctrl+D to quit)")
                continue
            interrupts = 0
            line = line.strip()
            if not line:
                continue
            if line.startswith("/"):
                if not self.command(line):
                    return 0
                continue
            try:
                self.answer(line)
            except KeyboardInterrupt:  # between the answer and its stats: nothing lost
                self.write("\n")
            except Exception as exc:  # noqa: BLE001 - an API error: say it, keep chatting
                message = getattr(exc, "message", None) or str(exc)
                self.write("\n")
                self.note(f"Error: {message}")
