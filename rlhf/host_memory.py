"""Handing the host memory a stage has freed back to the system while it trains.

A training step on the CPU allocates and frees megabytes of activations, gradients and logits many times over.
glibc's allocator keeps what is freed in its heap; small allocations then take pieces of the freed blocks, the
next block of the same size no longer fits and the heap grows again. The process's resident memory climbs far
above what its tensors hold: measured on PPO with SmolLM2-135M (``bench/ppo.py --model smollm2``), the heap
held 1.6 GB of which 0.4 GB were in use. ``malloc_trim`` returns the free pages inside the heap to the system
(the blocks stay where they are, so nothing moves). `releasing_freed_memory` calls it from a background thread
every ``release_memory_s`` seconds while a stage runs, as jemalloc's background purging does: the thread holds no
GIL while it trims, and the training thread waits only if it allocates during those milliseconds.

Only where the C library has ``malloc_trim`` (glibc, so Linux); elsewhere it does nothing.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import threading
from collections.abc import Callable, Iterator

logger = logging.getLogger(__name__)

THREAD_NAME = "rlhf-release-memory"
# the RL stage's default: PPO's peak 2.60 -> 1.72 one-policy processes on an fp32 EPYC, 2.09 -> 1.90 on a bf16
# Xeon (bench/ppo.py --model smollm2), for up to ~5% of its time
RL_RELEASE_MEMORY_S = 0.5


def malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim`` (None where the C library has none)."""
    try:
        return ctypes.CDLL(None).malloc_trim  # the process's own symbols, the C library's among them
    except (AttributeError, OSError, TypeError):  # no such symbol; no C library to open (Windows)
        return None


@contextlib.contextmanager
def releasing_freed_memory(every_s: float | None) -> Iterator[None]:
    """While the block runs, return freed heap memory to the system every ``every_s`` seconds (0 or None: never)."""
    trim = malloc_trim() if every_s else None
    if trim is None:
        if every_s:
            logger.debug("release_memory_s: this C library has no malloc_trim; nothing to do")
        yield
        return
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(every_s):
            trim(0)

    thread = threading.Thread(target=loop, name=THREAD_NAME, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
