"""Test-wide settings: offline, quiet, deterministic, and small enough for 2 CPU cores."""

import atexit
import os
import shutil
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_DISABLED", "true")
os.environ.setdefault("DISABLE_MLFLOW_INTEGRATION", "TRUE")
os.environ.setdefault("TRACKIO_DISABLED", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

# GGUF files are dequantised once per test run, into a folder of the run's own, never the user's cache
# (rlhf.gguf_cache); pytest-xdist workers inherit the folder from the process that made it, which deletes it.
if "RLHF_GGUF_CACHE" not in os.environ:
    os.environ["RLHF_GGUF_CACHE"] = tempfile.mkdtemp(prefix="rlhf-gguf-cache-")
    atexit.register(shutil.rmtree, os.environ["RLHF_GGUF_CACHE"], True)

# Under pytest-xdist every worker shares the machine's cores: one intra-op thread each (and in the processes
# a test starts), or the workers' OpenMP pools oversubscribe the cores and all of them slow down.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ["MKL_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)
