"""Plain-text corpora for the tokenizer and pretraining stages, and the blocks pretraining reads them in.

A corpus is a ``datasets.DatasetDict`` with a ``train`` and a ``validation`` split and one text
column. It comes from the built-in task (``"builtin"``), a local file or folder (JSON/JSONL, TXT,
Parquet, CSV; a folder of ``<split>.<ext>`` files such as ``rlhf data`` writes), or a Hub id.

Pretraining packs a split's documents into fixed-length blocks (:func:`pack_blocks`) and reads them in an
order that depends only on (seed, epoch) (:class:`BlockOrder`), so a resumed run sees the same batches.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from datasets import DatasetDict, load_dataset

from rlhf.config import ConfigError
from rlhf.data_files import TEXT_BUILDERS, local_data_files, read_data_files

_VALIDATION_NAMES = ("validation", "valid", "val", "dev", "test")


class CorpusError(ConfigError):
    """The corpus cannot be used as asked (missing column, unknown file type, empty split)."""


def looks_like_path(name: str) -> bool:
    """True for a name meant as a local path (``./x``, ``/x``, ``~/x``, ``x.jsonl``), not a Hub id (``org/name``)."""
    return (
        name.startswith((".", "/", "~")) or Path(name).suffix.lower() in TEXT_BUILDERS or name.count("/") > 1
    )


def _first_line(err: Exception) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def load_text_corpus(
    dataset_name: str,
    text_column: str = "text",
    dataset_config: str | None = None,
    seed: int = 0,
    validation_split_percentage: float = 5.0,
    task_kwargs: Mapping[str, Any] | None = None,
) -> DatasetDict:
    """Load a text corpus as ``DatasetDict(train=..., validation=...)`` holding only ``text_column``.

    Args:
        dataset_name: ``"builtin"`` (the built-in task's ``pretrain`` kind), a local file/folder, or a Hub id.
        text_column: the column holding the documents.
        dataset_config: the Hub dataset's configuration name, if it has several.
        seed: seeds the built-in world and the train/validation split of a corpus that has none.
        validation_split_percentage: share of train held out when the corpus has no validation split.
        task_kwargs: size knobs passed to ``rlhf.task.load_builtin`` (built-in corpus only).

    Plain ``.txt`` files hold one document per paragraph (blank-line separated).
    """
    if dataset_name == "builtin":
        from rlhf.task import load_builtin

        raw = load_builtin("pretrain", seed=seed, **dict(task_kwargs or {}))
    elif os.path.exists(dataset_name):
        builder, data_files = local_data_files(Path(dataset_name), with_text=True, error=CorpusError)
        if "train" not in data_files:
            raise CorpusError(
                f"dataset_name '{dataset_name}': a folder needs a train.<ext> file (found {list(data_files)})"
            )
        kwargs = {"sample_by": "paragraph"} if builder == "text" else {}
        raw = read_data_files(builder, data_files, dataset_name, error=CorpusError, **kwargs)
    elif looks_like_path(dataset_name):
        raise CorpusError(f"dataset_name '{dataset_name}': no such file or folder")
    else:
        try:
            raw = load_dataset(dataset_name, dataset_config)
        except Exception as err:  # not on the Hub, or the Hub cannot be reached (offline)
            raise CorpusError(
                f"dataset_name '{dataset_name}': not a local file or folder, and loading it as a Hub dataset "
                f"failed ({_first_line(err)})"
            ) from None
    if not isinstance(raw, DatasetDict):
        raw = DatasetDict({"train": raw})

    if "train" not in raw:
        raise CorpusError(f"dataset '{dataset_name}' has no train split (splits: {list(raw)})")
    for split_name, split in raw.items():
        if text_column not in split.column_names:
            raise CorpusError(
                f"dataset '{dataset_name}' split '{split_name}' has no column '{text_column}' "
                f"(columns: {split.column_names}); set text_column"
            )
    validation_name = next((name for name in _VALIDATION_NAMES if name in raw), None)
    if validation_name is None:
        if not 0 < validation_split_percentage < 100:
            raise CorpusError(
                "validation_split_percentage must be in (0, 100) when the corpus has no validation split"
            )
        parts = raw["train"].train_test_split(test_size=validation_split_percentage / 100, seed=seed)
        train, validation = parts["train"], parts["test"]
    else:
        train, validation = raw["train"], raw[validation_name]
    corpus = DatasetDict({"train": train, "validation": validation})
    corpus = corpus.select_columns([text_column])
    for split_name, split in corpus.items():
        if len(split) == 0:
            raise CorpusError(f"dataset '{dataset_name}': split '{split_name}' is empty")
    return corpus


# ----------------------------------------------------------------------------------------------
# data: packed blocks in an order that depends only on (seed, epoch)


def pack_blocks(texts: list[str], tokenizer, block_size: int) -> torch.Tensor:
    """Tokenize ``texts``, join them with the eos token after each, and cut into ``[n, block_size]``.

    The tail that does not fill a whole block is dropped. Returns an int64 tensor.
    """
    if tokenizer.eos_token_id is None:
        raise ConfigError("the tokenizer has no eos_token: documents cannot be separated")
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
    stream = [token for doc in ids for token in (*doc, tokenizer.eos_token_id)]
    n_blocks = len(stream) // block_size
    return torch.tensor(stream[: n_blocks * block_size], dtype=torch.long).view(n_blocks, block_size)


class BlockOrder:
    """Micro-batch ``m`` of process ``rank``: a pure function of (seed, m), so a resumed run skips exactly.

    Each epoch is a fresh permutation of all blocks seeded by ``seed + epoch``; consecutive slices of
    ``batch_size * num_processes`` blocks form the global micro-batches (a partial last one is dropped),
    and process ``rank`` takes its own ``batch_size`` rows of each.
    """

    def __init__(self, n_blocks: int, batch_size: int, num_processes: int, rank: int, seed: int):
        self.global_batch = batch_size * num_processes
        self.batches_per_epoch = n_blocks // self.global_batch
        if self.batches_per_epoch == 0:
            raise ConfigError(
                f"the corpus packs into only {n_blocks} blocks, fewer than one global batch "
                f"({batch_size} x {num_processes} processes): lower per_device_train_batch_size or block_size"
            )
        self.n_blocks, self.batch_size, self.rank, self.seed = n_blocks, batch_size, rank, seed
        self._epoch, self._perm = -1, None

    def __call__(self, micro_step: int) -> torch.Tensor:
        """Indices (into the packed blocks) of this process's rows of global micro-batch ``micro_step``."""
        epoch, i = divmod(micro_step, self.batches_per_epoch)
        if epoch != self._epoch:
            generator = torch.Generator().manual_seed(self.seed + epoch)
            self._epoch, self._perm = epoch, torch.randperm(self.n_blocks, generator=generator)
        start = i * self.global_batch + self.rank * self.batch_size
        return self._perm[start : start + self.batch_size]
