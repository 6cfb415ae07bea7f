"""Crashed instances and the crash-loop rule, kept by the model manager.

A worker that dies leaves its instance here (``lms ps`` shows it with the reason) until the
next request reloads it or an unload forgets it. Crash times are kept per model key: three
crashes of one model within a minute stop the automatic reload (an explicit load clears the
record and tries again). The manager holds its lock around every call.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from lms_jupyter.errors import APIError

if TYPE_CHECKING:
    from lms_jupyter.engine.worker import WorkerModel

CRASH_WINDOW_SECONDS = 60.0
CRASHES_BEFORE_GIVING_UP = 3  # crashes of one model within the window stop auto-reloads


class CrashLog:
    """The crashed instances by identifier, and recent crash times by model key."""

    def __init__(self):
        self._instances: dict[str, WorkerModel] = {}
        self._times: dict[str, list[float]] = {}

    def record(self, model: WorkerModel) -> None:
        self._instances[model.identifier] = model
        now = time.time()
        times = self._times.setdefault(model.info.key, [])
        times[:] = [t for t in times if now - t < CRASH_WINDOW_SECONDS] + [now]

    def instances(self) -> list[WorkerModel]:
        return list(self._instances.values())

    def pop(self, identifier: str) -> WorkerModel | None:
        return self._instances.pop(identifier, None)

    def forget_model(self, key: str) -> None:
        """An explicit load: the model's crash record starts over."""
        self._times.pop(key, None)

    def find(self, name: str) -> WorkerModel | None:
        """The crashed instance a request's model name means (identifier, key, publisher/key)."""
        wanted = name.lower()
        for model in self._instances.values():
            if wanted in (
                model.identifier.lower(),
                model.info.key,
                f"{model.info.publisher.lower()}/{model.info.key}",
            ):
                return model
        return None

    def check_loop(self, model: WorkerModel) -> None:
        """503 when ``model`` crashed too often to be reloaded automatically."""
        now = time.time()
        recent = [t for t in self._times.get(model.info.key, []) if now - t < CRASH_WINDOW_SECONDS]
        if len(recent) >= CRASHES_BEFORE_GIVING_UP:
            assert model.crash is not None  # narrowing only: it is a crashed instance
            raise APIError(
                f'Model "{model.identifier}" crashed {len(recent)} times within a minute, '
                "so it is not reloaded automatically any more. Last crash: "
                f"{model.crash.reason}. Load it explicitly (lms load) to try again.",
                503,
                "server_error",
                "model",
                "model_crashed",
            )
