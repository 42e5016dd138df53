"""Intake's write path: group commit with per-notification error isolation.

Concurrent webhook requests share one transaction (up to 256 notifications), which is what keeps intake fast.
A batch that fails is retried one notification per transaction, so a notification no store can hold costs only
its own answer; its batch-mates are stored and answered. Every waiting request gets an answer, whatever fails.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

from . import store as st
from .intake import Notification

log = logging.getLogger(__name__)

BATCH = 256

_Item = tuple[Notification, str, "asyncio.Future[st.IntakeResult]"]


@dataclass
class Recorder:
    store: st.Store
    on_new_episodes: Callable[[], None]
    clock: Callable[[], float]
    _queue: list[_Item] = field(default_factory=list)
    _flusher: asyncio.Task[None] | None = None

    async def record(self, note: Notification, text: str) -> st.IntakeResult:
        """Persist one notification; returns once its transaction committed, raises StoreError otherwise."""
        future: asyncio.Future[st.IntakeResult] = asyncio.get_running_loop().create_future()
        self._queue.append((note, text, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        return await future

    async def _write(self, batch: list[_Item]) -> list[st.IntakeResult]:
        return await self.store.run(partial(st.record_notifications, items=[(n, t) for n, t, _ in batch],
                                            now=self.clock()))

    async def _flush(self) -> None:
        batch: list[_Item] = []
        try:
            while self._queue:
                batch, self._queue = self._queue[:BATCH], self._queue[BATCH:]
                try:
                    results = await self._write(batch)
                except Exception as exc:
                    if len(batch) == 1:
                        _fail(batch[0], exc)
                        continue
                    log.warning("a group commit failed; storing its notifications one by one",
                                extra={"error": str(exc), "batch": len(batch)})
                    results = []
                    for item in batch:
                        try:
                            results.append((await self._write([item]))[0])
                        except Exception as one:
                            _fail(item, one)
                    batch = [item for item in batch if not item[2].done()]
                for (_, _, future), result in zip(batch, results, strict=True):
                    if not future.done():
                        future.set_result(result)
                if any(r.new_episodes for r in results):
                    self.on_new_episodes()
        finally:  # cancelled (shutdown): nobody waits forever
            for item in [*batch, *self._queue]:
                _fail(item, st.StoreError("the receiver is stopping; retry"))


def _fail(item: _Item, exc: BaseException) -> None:
    future = item[2]
    if future.done():
        return
    if not isinstance(exc, st.StoreError):
        log.error("could not store a notification", exc_info=exc)
        exc = st.StoreError(f"could not store the notification: {type(exc).__name__}")
    future.set_exception(exc)
