"""Work the service repeats in the background while it serves, and how it fails loudly.

A :class:`Periodic` runs its :meth:`~Periodic.round` every ``interval_s`` seconds in a worker
thread (the app's lifespan starts and stops it). A round that raises is logged and tried
again next round — the work it left stays pending (review events to append, owner access
rows to seal) — and after :data:`FAILING_ROUNDS` failed rounds in a row the worker is
*failing*: ``GET /api/v1/health`` answers ``"degraded"`` and names it in zh-CN
(``problems_zh``) until a round succeeds. Nothing that keeps failing lives only in a log.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

_log = logging.getLogger(__name__)

FAILING_ROUNDS = 2  # failed rounds in a row before the health turns degraded


class Periodic:
    """Base of the service's background workers; subclasses define :meth:`round`."""

    name_zh = "后台任务"

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self.failures = 0  # rounds that ended in an error, since start
        self.failing_rounds = 0  # of them, in a row up to now
        self.last_error = ""
        self._stopping = threading.Event()

    def round(self) -> str | None:
        """One round of the work (in a worker thread); a line to log, or None."""
        raise NotImplementedError

    @property
    def failing(self) -> bool:
        return self.failing_rounds >= FAILING_ROUNDS

    def problem_zh(self) -> str | None:
        """What the health page says while this worker is failing, else None."""
        if not self.failing:
            return None
        return f"{self.name_zh}连续{self.failing_rounds}次失败：{self.last_error}"

    async def run(self) -> None:
        """Run a round every ``interval_s`` until :meth:`stop`."""
        self._stopping.clear()
        while not self._stopping.is_set():
            try:
                said = await asyncio.to_thread(self.round)
            except Exception as exc:  # keep the app serving; the work stays pending
                self.failures += 1
                self.failing_rounds += 1
                self.last_error = f"{type(exc).__name__}: {exc}"[:300]
                _log.error("%s failed (%d in a row; retrying in %.1f s): %s",
                           type(self).__name__, self.failing_rounds, self.interval_s,
                           self.last_error)
            else:
                self.failing_rounds = 0
                if said:
                    _log.info("%s", said)
            await self._sleep()

    async def _sleep(self) -> None:
        deadline = asyncio.get_running_loop().time() + self.interval_s
        while not self._stopping.is_set():
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                return
            await asyncio.sleep(min(left, 0.05))

    def stop(self) -> None:
        """Ask :meth:`run` to end (after the round in progress, if any)."""
        self._stopping.set()

    @property
    def stopping(self) -> threading.Event:
        return self._stopping


def background_workers(app: Any) -> list[Periodic]:
    """The app's background workers (set on ``app.state`` by ``create_app``)."""
    state = app.state
    found = (getattr(state, name, None) for name in WORKER_ATTRIBUTES)
    return [w for w in found if isinstance(w, Periodic)]


WORKER_ATTRIBUTES = ("event_flusher", "access_sealer")  # the names on app.state
