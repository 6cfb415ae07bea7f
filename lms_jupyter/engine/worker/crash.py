"""What a dead worker process tells its users: the signal, its last words, a fix.

The report is what every front shows the same way: the 503 ``model_crashed`` error of
each request that was running or waiting, the ``crashed`` row of ``lms ps`` and the
sidebar, and the log stream's line.
"""

from __future__ import annotations

import signal
import time
from dataclasses import dataclass, field

from lms_jupyter.errors import APIError

# The command that rebuilds llama-cpp-python the way scripts/dev.sh does: without AMX
# instructions, which some virtual machines report but fault on, and bypassing pip's
# cache (whose wheel is the faulty build).
REBUILD_COMMAND = (
    'CFLAGS="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16" '
    'CXXFLAGS="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16" '
    "pip install --force-reinstall --no-cache-dir --no-deps llama-cpp-python==0.3.36"
)

_FAULT_SIGNALS = {signal.SIGILL, signal.SIGSEGV, signal.SIGBUS}


def describe_exit(returncode: int | None) -> str:
    """``SIGSEGV`` for a signal, ``exit code 3`` for an exit, ``unknown`` when not known."""
    if returncode is None:
        return "unknown"
    if returncode < 0:
        try:
            return signal.Signals(-returncode).name
        except ValueError:
            return f"signal {-returncode}"
    return f"exit code {returncode}"


@dataclass
class CrashReport:
    """Why one worker died."""

    identifier: str
    returncode: int | None
    stderr_tail: list[str] = field(default_factory=list)
    phase: str = "generation"  # "load", "first decode" or "generation"
    at: float = field(default_factory=time.time)

    @property
    def signal_name(self) -> str:
        return describe_exit(self.returncode)

    @property
    def faulty_build(self) -> bool:
        """A fault instruction or memory fault before the model ever answered: most likely
        a llama.cpp built for CPU features this machine faults on."""
        return (
            self.phase in ("load", "first decode")
            and self.returncode is not None
            and -self.returncode in _FAULT_SIGNALS
        )

    @property
    def reason(self) -> str:
        """One line for ``lms ps`` and the sidebar."""
        last = next((line for line in reversed(self.stderr_tail) if line.strip()), "")
        reason = f"worker process terminated: {self.signal_name} during {self.phase}"
        return f"{reason} ({last.strip()[:200]})" if last else reason

    @property
    def message(self) -> str:
        text = (
            f'Model "{self.identifier}" crashed: its worker process terminated with '
            f"{self.signal_name} during {self.phase}."
        )
        if self.stderr_tail:
            text += " Last output: " + " | ".join(
                line.strip() for line in self.stderr_tail[-5:] if line.strip()
            )
        if self.faulty_build:
            text += (
                " llama-cpp-python was likely built for CPU features this machine faults "
                f"on; rebuild it with: {REBUILD_COMMAND}"
            )
        else:
            text += " The next request that names the model loads it again."
        return text

    def error(self) -> APIError:
        """The error every request on the dead instance ends with."""
        return APIError(self.message, 503, "server_error", "model", "model_crashed")

    def as_dict(self) -> dict:
        return {
            "reason": self.reason,
            "signal": self.signal_name,
            "phase": self.phase,
            "returncode": self.returncode,
            "at": int(self.at * 1000),
            "stderrTail": self.stderr_tail[-10:],
            "faultyBuild": self.faulty_build,
        }
