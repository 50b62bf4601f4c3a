"""Freed host memory goes back to the system while a stage runs (`rlhf.host_memory`, `rlhf.runs.stage_run`)."""

from __future__ import annotations

import ctypes
import threading
import time
from dataclasses import dataclass

import pytest

from rlhf.config import ConfigError
from rlhf.host_memory import THREAD_NAME, malloc_trim, releasing_freed_memory
from rlhf.runs import stage_run

BLOCK, BLOCKS = 64 * 1024, 400  # below glibc's smallest mmap threshold (128 kB): every block is in the heap


def resident_mb() -> float:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS")) / 1024


@pytest.mark.skipif(malloc_trim() is None, reason="this C library has no malloc_trim (not glibc)")
def test_the_release_thread_returns_a_fragmented_heap_to_the_system():
    libc = ctypes.CDLL(None)
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    blocks = []
    for _ in range(2 * BLOCKS):
        block = libc.malloc(BLOCK)
        ctypes.memset(block, 1, BLOCK)  # resident
        blocks.append(block)
    freed_mb = BLOCKS * BLOCK / 2**20
    try:
        held = resident_mb()
        for block in blocks[::2]:  # every other block: the kept ones keep the freed ones from merging
            libc.free(block)
        time.sleep(0.3)
        freed = resident_mb()
        # the allocator keeps freed heap blocks resident by itself (so the test below can fail)
        assert freed > held - 0.25 * freed_mb, (held, freed)
        with releasing_freed_memory(0.05):
            deadline = time.monotonic() + 5
            while resident_mb() > freed - 0.5 * freed_mb and time.monotonic() < deadline:
                time.sleep(0.05)
            released = resident_mb()
        assert released < freed - 0.5 * freed_mb, (held, freed, released)
    finally:
        for block in blocks[1::2]:
            libc.free(block)


def release_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == THREAD_NAME]


@dataclass
class Args:
    output_dir: str
    release_memory_s: float = 0.5


def test_stage_run_releases_memory_while_its_body_runs_and_stops_after(tmp_path):
    with stage_run("test", Args(str(tmp_path / "run"))):
        assert len(release_threads()) == (1 if malloc_trim() else 0)
    assert release_threads() == []
    with stage_run("test", Args(str(tmp_path / "run"), release_memory_s=0)):
        assert release_threads() == []
    negative = Args(str(tmp_path / "run"), release_memory_s=-1)
    with (
        pytest.raises(ConfigError, match="release_memory_s: expected 0 .* got -1"),
        stage_run("test", negative),
    ):
        pass
    # the thread stops when the stage fails too
    with pytest.raises(RuntimeError, match="boom"), stage_run("test", Args(str(tmp_path / "run"))):
        raise RuntimeError("boom")
    assert release_threads() == []


def test_every_fine_tuning_stage_has_the_setting_and_the_rl_stage_turns_it_on():
    from rlhf.ppo import RLScriptArguments
    from rlhf.stages import StageArguments

    assert StageArguments(release_memory_s=2).release_memory_s == 2
    assert StageArguments().release_memory_s == 0  # off, except in the RL stage
    assert RLScriptArguments().release_memory_s == 0.5
