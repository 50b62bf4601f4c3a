"""A local cache of dequantised GGUF models and tokenizers.

transformers dequantises a GGUF file on every ``from_pretrained`` (about 30 s for SmolLM2-135M and 7 s for its
tokenizer on 2 CPU cores; minutes for billion-parameter files), and every stage that starts from the file
would pay it again. The first load saves the result as an ordinary model directory; later loads read it.

An entry is keyed by the file's resolved path, size and modification time, the dtype asked for and the
transformers version, so an edited file or a new dequantiser misses. Entries are written to a temporary folder
and renamed into place, so a process that stops half-way or a second process loading the same file at the same
moment never leaves a partial entry.

``RLHF_GGUF_CACHE`` sets the folder (default ``$HF_HOME/rlhf-gguf``); ``RLHF_GGUF_CACHE=off`` turns the cache
off. Delete the folder to reclaim the space: an entry holds the weights unquantised (4 bytes a parameter in
float32).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import transformers

logger = logging.getLogger(__name__)

OFF = {"off", "0", "false", "no"}


def cache_root() -> Path | None:
    """The cache folder, or None when ``RLHF_GGUF_CACHE`` turns it off."""
    setting = os.environ.get("RLHF_GGUF_CACHE", "")
    if setting.lower() in OFF:
        return None
    if setting:
        return Path(setting)
    from huggingface_hub import constants

    return Path(constants.HF_HOME) / "rlhf-gguf"


def entry_path(gguf_path: str | os.PathLike, kind: str) -> Path | None:
    """Where the entry for ``gguf_path`` loaded as ``kind`` (e.g. ``model-float32``, ``tokenizer``) lives."""
    root = cache_root()
    if root is None:
        return None
    path = Path(gguf_path).resolve()
    stat = path.stat()
    key = f"{path}|{stat.st_size}|{stat.st_mtime_ns}|{kind}|{transformers.__version__}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return root / f"{path.stem}-{kind}-{digest}"


def cached(gguf_path: str | os.PathLike, kind: str, build: Callable[[Path], None]) -> Path | None:
    """The entry directory for ``gguf_path`` as ``kind``, made by ``build(folder)`` on a miss.

    Returns None when the cache is off or cannot be written (the caller then loads the file directly).
    """
    entry = entry_path(gguf_path, kind)
    if entry is None:
        return None
    if entry.is_dir():
        return entry
    partial = entry.with_name(f"{entry.name}.partial-{os.getpid()}")
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        build(partial)
        try:
            partial.rename(entry)
        except OSError:  # another process finished the same entry first: keep theirs
            if not entry.is_dir():
                raise
    except OSError as err:
        logger.warning("GGUF cache: could not write %s (%s); loading %s without it", entry, err, gguf_path)
        return None
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    logger.info("GGUF cache: dequantised %s into %s (later loads read it)", gguf_path, entry)
    return entry
