"""When to reload the model, and loading it off the serving path.

Triggers: SIGHUP (the role context's ``reload`` event) or, with ``watch_symlink``, the model
directory's resolved target changing (``ln -sfn models/v2 models/current``). The new directory
is loaded and fully verified in a background thread while the old model keeps serving; only a
model that passed every check is handed over, and a failure is logged and counted.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

from monitor.errors import ModelError
from monitor.logs import get_logger
from monitor.score.model import LoadedModel

log = get_logger("score.reload")

Loader = Callable[[Path], LoadedModel]


def resolved_target(path: Path) -> Path | None:
    try:
        return path.resolve(strict=True)
    except (OSError, RuntimeError):
        return None


class ReloadTrigger:
    """Says when a reload is due: a set ``event`` (SIGHUP) or a retargeted symlink."""

    def __init__(
        self,
        model_dir: Path,
        event: threading.Event,
        *,
        watch_symlink: bool,
        interval_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.model_dir = model_dir
        self.event = event
        self.watch_symlink = watch_symlink
        self.interval_s = interval_s
        self.clock = clock
        self.serving: Path | None = None
        self._next_check = float("-inf")

    def due(self) -> str | None:
        if self.event.is_set():
            self.event.clear()
            return "sighup"
        if not self.watch_symlink or self.serving is None:
            return None
        now = self.clock()
        if now < self._next_check:
            return None
        self._next_check = now + self.interval_s
        if not self.model_dir.is_symlink():
            return None
        target = resolved_target(self.model_dir)
        if target is not None and target != self.serving:
            return "symlink"
        return None


class BackgroundLoader:
    """Loads one model directory at a time in a thread; the caller polls for the outcome."""

    def __init__(self, loader: Loader) -> None:
        self.loader = loader
        self._thread: threading.Thread | None = None
        self._outcome: LoadedModel | ModelError | None = None
        self._lock = threading.Lock()
        self.attempted: Path | None = None

    @property
    def busy(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, path: Path) -> bool:
        if self.busy:
            return False
        self.attempted = resolved_target(path) or path

        def work() -> None:
            try:
                outcome: LoadedModel | ModelError = self.loader(path)
            except ModelError as exc:
                outcome = exc
            except Exception as exc:  # a loader bug must refuse the model, not kill the worker
                log.exception("model load crashed", extra={"path": str(path)})
                outcome = ModelError(f"{path}: loading failed: {type(exc).__name__}: {exc}")
            with self._lock:
                self._outcome = outcome

        self._thread = threading.Thread(target=work, name="score-model-load", daemon=True)
        self._thread.start()
        return True

    def outcome(self) -> LoadedModel | ModelError | None:
        with self._lock:
            out, self._outcome = self._outcome, None
        return out

    def join(self, timeout: float) -> None:
        if self._thread is not None:
            self._thread.join(timeout)
