"""The one queue in front of the model: batches chat requests, runs streams and moderation alone.

Every job that touches the model (or a model-backed moderator) goes through one bounded ``asyncio.Queue``
and runs on one worker thread, so the event loop never waits on ``generate`` and the model is used by one
thread at a time. Chat jobs that arrive within ``batch_wait_s`` of each other (up to ``max_batch_size``,
same generation settings) share one ``Pipeline.batch`` call; a checked stream or a moderation request
takes the model alone. A job's ``cancel`` flag (set when its request timed out or its client went away)
is a stopping criterion inside ``generate``: its rows stop at the next token.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from rlhf.pipeline import Pipeline


class QueueFull(Exception):
    """The queue holds ``max_queue_size`` jobs; the request should be retried later (429)."""


@dataclass
class Job:
    """One request's work: ``kind`` is ``chat`` (batched), ``stream`` or ``call`` (runs ``fn`` alone)."""

    kind: str
    conversation: list[dict[str, str]] | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    fn: Callable[[threading.Event], Any] | None = None
    future: asyncio.Future | None = None
    cancel: threading.Event = field(default_factory=threading.Event)
    queued_at: float = field(default_factory=time.perf_counter)


class Batcher:
    """The queue and its worker. ``start()`` inside the running loop, ``stop()`` at shutdown.

    ``on_batch(size, queue_wait_s)`` is called after every ``Pipeline.batch`` call (for metrics).
    """

    def __init__(
        self,
        pipe: Pipeline,
        max_batch_size: int,
        batch_wait_s: float,
        max_queue_size: int,
        on_batch: Callable[[int, list[float]], None] | None = None,
    ):
        self.pipe, self.max_batch_size, self.batch_wait_s = pipe, max_batch_size, batch_wait_s
        self.max_queue_size = max_queue_size
        self.on_batch = on_batch
        self.queue: asyncio.Queue[Job] | None = None
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rlhf-model")
        self.batches: list[int] = []  # sizes of the batches run (for /health and tests)
        self.running: list[Job] = []  # jobs on the model now (cancelled at shutdown)
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self.queue = asyncio.Queue(maxsize=self.max_queue_size)
        self._task = asyncio.get_running_loop().create_task(self._run(), name="rlhf-serve-batcher")

    async def stop(self) -> None:
        for job in self.running:
            job.cancel.set()
        if self._task is not None:
            self._task.cancel()
        self.executor.shutdown(wait=False, cancel_futures=True)

    def depth(self) -> int:
        return self.queue.qsize() if self.queue is not None else 0

    def submit(self, job: Job) -> Job:
        """Queue ``job`` (its ``future`` gets the result); raises QueueFull when the queue is full."""
        job.future = asyncio.get_running_loop().create_future()
        # a request that timed out no longer reads its future: retrieve a late error so asyncio stays quiet
        job.future.add_done_callback(lambda f: f.cancelled() or f.exception())
        try:
            self.queue.put_nowait(job)
        except asyncio.QueueFull:
            raise QueueFull from None
        return job

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            first = await self.queue.get()
            jobs, later = [first], []
            if first.kind == "chat":
                deadline = loop.time() + self.batch_wait_s
                while len(jobs) < self.max_batch_size:
                    try:
                        job = await asyncio.wait_for(self.queue.get(), max(0.0, deadline - loop.time()))
                    except TimeoutError:
                        break
                    (jobs if job.kind == "chat" else later).append(job)
            else:
                jobs, later = [], [first]
            groups: dict[str, list[Job]] = {}
            for job in jobs:
                if not job.cancel.is_set() and not job.future.done():
                    groups.setdefault(json.dumps(job.overrides, sort_keys=True), []).append(job)
            for group in groups.values():
                await self._run_group(loop, group)
            for job in later:
                if not job.cancel.is_set() and not job.future.done():
                    await self._run_alone(loop, job)

    async def _run_group(self, loop, group: list[Job]) -> None:
        waits = [time.perf_counter() - j.queued_at for j in group]
        self.running = group
        try:
            responses = await loop.run_in_executor(
                self.executor,
                lambda: self.pipe.batch(
                    [j.conversation for j in group], cancel=[j.cancel for j in group], **group[0].overrides
                ),
            )
        except Exception as err:  # handed to every waiting request
            for job in group:
                if not job.future.done():
                    job.future.set_exception(err)
            return
        finally:
            self.running = []
        self.batches.append(len(group))
        if self.on_batch is not None:
            self.on_batch(len(group), waits)
        for job, response in zip(group, responses, strict=True):
            if not job.future.done():
                job.future.set_result(response)

    async def _run_alone(self, loop, job: Job) -> None:
        self.running = [job]
        try:
            result = await loop.run_in_executor(self.executor, job.fn, job.cancel)
        except Exception as err:
            if not job.future.done():
                job.future.set_exception(err)
        else:
            if not job.future.done():
                job.future.set_result(result)
        finally:
            self.running = []
