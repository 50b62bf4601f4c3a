"""Whether this machine runs bf16 fast: the one hardware check every training stage shares."""

from __future__ import annotations

import os
from pathlib import Path

import torch


def bf16_supported() -> bool:
    """Whether bf16 autocast is fast here: a bf16-capable GPU, or a CPU with native bf16 instructions.

    On a CPU without them (e.g. AVX2-only x86) PyTorch emulates bf16 matmuls: measured 1 GFLOP/s
    against 70 GFLOP/s in fp32 on such a machine, so bf16 there would be a 40x slowdown, not a gain.
    """
    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    flags = set(cpuinfo.split())
    return bool(flags & {"avx512_bf16", "amx_bf16"}) or ("bf16" in flags and "aarch64" in os.uname().machine)
