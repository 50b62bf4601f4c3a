"""Datasets for the fine-tuning stages: loaded from anywhere, converted, checked, held-out splits carved.

    data = load_dataset_for("sft", "builtin")                          # the built-in task
    data = load_dataset_for("preference", "data/pairs.jsonl")          # local .json/.jsonl/.parquet/.csv
    data = load_dataset_for("preference", "Anthropic/hh-rlhf")         # a Hub id (raw HH-RLHF is converted)
    data = load_dataset_for("sft", "qa.csv", column_mapping={"question": "prompt", "answer": "completion"})

Every kind comes out as a ``DatasetDict`` in one of TRL's conversational formats (:mod:`rlhf.dataset_formats`
says which, and converts into them); a missing column stops with a message that names the dataset, the split,
the column and the columns that are there. :class:`DatasetArguments` are the dataset fields every stage
shares. Plain-text corpora (tokenizer, pretraining) are :mod:`rlhf.corpus`; `rlhf data` (:mod:`rlhf.data`)
writes the built-in task to disk.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from datasets import DatasetDict, load_dataset

from rlhf import preferences
from rlhf.data_files import FILE_BUILDERS, local_data_files, read_data_files
from rlhf.dataset_formats import (
    DATASET_FORMATS,
    KINDS,
    DatasetFormatError,
    parse_column_mapping,
    prepare_split,
)

logger = logging.getLogger(__name__)

# Names other modules and users import from here.
__all__ = ["DatasetArguments", "DatasetFormatError", "load_dataset_for", "parse_column_mapping"]


def load_raw_dataset(
    dataset_name: str,
    kind: str,
    dataset_config: str | None = None,
    seed: int = 0,
    task_kwargs: Mapping[str, Any] | None = None,
    dataset_format: str = "auto",
    on_bad_row: str = "error",
    counts: dict[str, Any] | None = None,
) -> DatasetDict:
    """The dataset as stored, before mapping, conversion and checks (PandaLM / pairwise files already converted
    to preference rows, with what was dropped added to ``counts``)."""
    if dataset_name == "builtin":
        from rlhf.task import load_builtin

        return load_builtin(kind, seed=seed, **dict(task_kwargs or {}))
    path = Path(dataset_name)
    if path.exists():
        builder, data_files = local_data_files(path, error=DatasetFormatError)
        converted = preferences.load_files(data_files, dataset_format, on_bad_row, counts)
        if converted is not None:
            return converted
        return read_data_files(builder, data_files, dataset_name, error=DatasetFormatError)
    if path.suffix.lower() in FILE_BUILDERS or os.sep in dataset_name and dataset_name.count("/") > 1:
        raise DatasetFormatError(f"dataset '{dataset_name}': no such file or folder")
    data = load_dataset(dataset_name, name=dataset_config)
    if not isinstance(data, DatasetDict):
        data = DatasetDict({"train": data})
    first = data[next(iter(data))]
    detected = preferences.detect_format(first[0]) if len(first) else None
    if dataset_format in preferences.FORMATS or (dataset_format == "auto" and detected):
        fmt = dataset_format if dataset_format in preferences.FORMATS else detected
        return preferences.to_dataset(
            {split: (list(rows), f"{dataset_name} (split '{split}')") for split, rows in data.items()},
            fmt, on_bad_row, counts,
        )  # fmt: skip
    return data


def load_dataset_for(
    kind: str,
    dataset_name: str | Sequence[str],
    *,
    splits: Sequence[str] = ("train", "test"),
    dataset_config: str | None = None,
    column_mapping: Mapping[str, str] | None = None,
    dataset_format: str = "auto",
    holdout_fraction: float = 0.1,
    validation_fraction: float = 0.0,
    seed: int = 0,
    split_seed: int | None = None,
    task_kwargs: Mapping[str, Any] | None = None,
    on_bad_row: str = "error",
    report: dict[str, Any] | None = None,
) -> DatasetDict:
    """Load the ``splits`` of a dataset for a stage, converted and checked (see the module docstring).

    Args:
        kind: ``"sft"``, ``"preference"`` or ``"prompts"``.
        dataset_name: ``"builtin"``, a local file or folder of ``<split>.<ext>`` files, or a Hub id; or several
            preference sources (a list), pooled before the split.
        splits: the split names the stage uses, the training split first. Missing held-out splits are carved
            from the first by group (rows sharing a prompt or an answer text stay together; see
            `rlhf.preferences.split_by_group`): ``holdout_fraction`` of the rows as the test split and, when
            ``validation_fraction`` > 0, that share as ``validation`` too (the test split is the same either way).
        column_mapping: ``{"their_column": "our_column"}`` renames applied before anything else.
        dataset_format: ``"auto"`` (detects raw HH-RLHF, PandaLM and pairwise files), or one format by name.
        seed: the built-in task's world seed; ``split_seed`` (default: ``seed``) orders the carved groups.
        task_kwargs: the built-in task's size knobs.
        on_bad_row: ``"error"`` (stop at a malformed PandaLM / pairwise row) or ``"drop"`` (drop and count it).
        report: filled with what was read, dropped and carved, and (``"data"``) every split, when given.

    Returns:
        ``DatasetDict`` with exactly ``splits``.

    Raises:
        DatasetFormatError: a missing column or split, an unknown file type, rows that cannot be converted.
    """
    if kind not in KINDS:
        raise ValueError(f"kind '{kind}' is not one of {list(KINDS)}")
    report = {} if report is None else report
    counts: dict[str, Any] = {}
    names = [dataset_name] if isinstance(dataset_name, str) else list(dataset_name)
    label = " + ".join(names)
    raws = [
        load_raw_dataset(n, kind, dataset_config, seed, task_kwargs, dataset_format, on_bad_row, counts)
        for n in names
    ]
    raw = raws[0] if len(raws) == 1 else _pool(raws, names, column_mapping, dataset_format)
    if len(raws) > 1:
        column_mapping, dataset_format = None, "trl"  # applied per source by _pool
    first = splits[0]
    if first not in raw:
        raise DatasetFormatError(
            f"dataset '{label}': no split '{first}'; splits present: {list(raw)} (set dataset_train_split)"
        )
    test_name = next((s for s in splits[1:] if s != "validation"), "test")
    fractions = {test_name: holdout_fraction}
    if validation_fraction > 0:
        fractions["validation"] = validation_fraction
    elif "validation" in splits[1:]:
        fractions = {"validation": holdout_fraction}
    carve = {name: f for name, f in fractions.items() if name not in raw}
    if any(s not in raw for s in splits[1:]) and carve:
        if not all(0 < f < 1 for f in carve.values()):
            raise DatasetFormatError(
                f"dataset '{label}': no split {list(carve)}; splits present: {list(raw)}"
            )
        present = raw[first].column_names  # a mapping naming a missing column fails later, with its message
        renames = {k: v for k, v in (column_mapping or {}).items() if k != v and k in present}
        mapped = raw[first].rename_columns(renames)
        parts, dropped = preferences.split_by_group(
            list(mapped), carve, seed=seed if split_seed is None else split_seed, train=first
        )
        if dropped:
            logger.warning(
                "%s: dropped %d rows whose answer text is also in an earlier split", label, dropped
            )
        logger.info("%s: carved %s from '%s' by prompt", label, {k: len(v) for k, v in parts.items()}, first)
        raw = DatasetDict({**raw, **{name: raw[first].select(rows) for name, rows in parts.items()}})
        report["carved"] = {
            "from": first,
            "fractions": carve,
            "seed": seed if split_seed is None else split_seed,
        }
        report["dropped_shared_answer"] = dropped
    missing = [s for s in splits if s not in raw]
    if missing:
        raise DatasetFormatError(f"dataset '{label}': no split {missing}; splits present: {list(raw)}")
    wanted = list(dict.fromkeys([*splits, *(report.get("carved", {}).get("fractions", {}))]))
    data = DatasetDict(
        {s: prepare_split(raw[s], kind, label, s, column_mapping, dataset_format) for s in wanted}
    )
    report.update(sources=counts, data=data, rows={s: len(d) for s, d in data.items()})
    return DatasetDict({s: data[s] for s in splits})


def _pool(raws, names, column_mapping, dataset_format) -> DatasetDict:
    """Several preference sources -> one ``DatasetDict`` of conversational prompt/chosen/rejected, per split."""
    pooled: dict[str, list] = {}
    for raw, name in zip(raws, names, strict=True):
        for split, dataset in raw.items():
            rows = prepare_split(dataset, "preference", name, split, column_mapping, dataset_format)
            pooled.setdefault(split, []).append(rows.select_columns(["prompt", "chosen", "rejected"]))
    from datasets import concatenate_datasets

    return DatasetDict({split: concatenate_datasets(parts) for split, parts in pooled.items()})


@dataclass
class DatasetArguments:
    """
    Where a fine-tuning stage's data comes from (the dataset fields every stage shares).

    Args:
        dataset_name (`str`, *optional*, defaults to `"builtin"`):
            `"builtin"` (the built-in task), a local `.json`/`.jsonl`/`.parquet`/`.csv` file or a folder of
            `<split>.<ext>` files (as `rlhf data` writes), or a Hub dataset id.
        dataset_config (`str` or `None`, *optional*, defaults to `None`):
            Configuration name of a Hub dataset.
        dataset_train_split (`str`, *optional*, defaults to `"train"`):
            Split to train on.
        dataset_test_split (`str`, *optional*, defaults to `"test"`):
            Held-out split for evaluation; carved from the training split (`holdout_fraction`) when absent.
        dataset_column_mapping (`dict` or `str` or `None`, *optional*, defaults to `None`):
            Renames applied first, `{"your_column": "trl_column"}` (JSON text on the command line).
        dataset_format (`str`, *optional*, defaults to `"auto"`):
            `"auto"` (detects Anthropic HH-RLHF raw dialogues, PandaLM's three votes and LLMBar / MT-Bench's
            `output_1`/`output_2`/`label`), `"hh-rlhf"`, `"pandalm"`, `"pairwise"`, or `"trl"` (TRL's formats).
        dataset_mixture (`list[str]` or `None`, *optional*, defaults to `None`):
            More preference sources pooled with `dataset_name` (each in its own format) before the split.
        holdout_fraction (`float`, *optional*, defaults to `0.1`):
            Share of the training rows held out as `dataset_test_split` when the dataset has none (by prompt:
            rows sharing a prompt or an answer text stay in one split).
        validation_fraction (`float`, *optional*, defaults to `0.0`):
            Share of the rows also held out as a `validation` split when the dataset has none (0: no split).
        split_seed (`int`, *optional*, defaults to `0`):
            Seed of that split; independent of the training `seed`, so every seed and stage sees the same split.
        bad_rows (`str`, *optional*, defaults to `"error"`):
            A malformed PandaLM / pairwise row (missing field, bad label, empty answer): `"error"` stops naming
            the file, the row and the field; `"drop"` drops it and counts it in `split.json` and the metrics.
        max_train_samples (`int` or `None`, *optional*, defaults to `None`):
            Train on at most this many rows (`None`: all).
        task_seed (`int`, *optional*, defaults to `0`):
            Built-in task: seed of the generated world; the same as pretraining's `task_seed`, whatever the
            training `seed` (which only orders batches and initialises weights).
        task_num_people (`int` or `None`, *optional*, defaults to `None`):
            Built-in task: people in the generated world (`None`: the task's default).
    """

    dataset_name: str = field(
        default="builtin",
        metadata={"help": "'builtin', a local file/folder (json, jsonl, parquet, csv), or a Hub id."},
    )
    dataset_config: str | None = field(
        default=None, metadata={"help": "Configuration name of a Hub dataset."}
    )
    dataset_train_split: str = field(default="train", metadata={"help": "Split to train on."})
    dataset_test_split: str = field(default="test", metadata={"help": "Held-out split for evaluation."})
    dataset_column_mapping: dict | str | None = field(
        default=None,
        metadata={"help": 'Column renames applied first, e.g. {"question": "prompt"} (JSON on the CLI).'},
    )
    dataset_format: str = field(
        default="auto",
        metadata={
            "help": "auto (detects HH-RLHF, PandaLM, pairwise), hh-rlhf, pandalm, pairwise, or trl.",
            "choices": list(DATASET_FORMATS),
        },
    )
    dataset_mixture: list[str] | None = field(
        default=None, metadata={"help": "More preference sources pooled with dataset_name before the split."}
    )
    holdout_fraction: float = field(
        default=0.1, metadata={"help": "Share of rows held out (by prompt) when there is no test split."}
    )
    validation_fraction: float = field(
        default=0.0, metadata={"help": "Share of rows also held out as 'validation' (0: none)."}
    )
    split_seed: int = field(
        default=0, metadata={"help": "Seed of the held-out split (not the training seed)."}
    )
    bad_rows: str = field(
        default="error",
        metadata={
            "help": "Malformed preference rows: error or drop.",
            "choices": list(preferences.BAD_ROW_POLICIES),
        },
    )
    max_train_samples: int | None = field(default=None, metadata={"help": "Train on at most this many rows."})
    task_seed: int = field(default=0, metadata={"help": "Built-in task: seed of the generated world."})
    task_num_people: int | None = field(
        default=None, metadata={"help": "Built-in task: people in the generated world (None: task default)."}
    )

    def task_kwargs(self) -> dict[str, Any]:
        """The built-in task's size knobs that are set (passed to ``rlhf.task.load_builtin``)."""
        return {"num_people": self.task_num_people} if self.task_num_people is not None else {}

    def load(self, kind: str, seed: int) -> DatasetDict:
        """Load the train and held-out splits for ``kind`` (see `load_dataset_for`), checked.

        What was read, dropped and carved is kept in ``self.data_report`` (see `save_split`).
        """
        self.data_report: dict[str, Any] = {}
        builtin = self.dataset_name == "builtin"
        data = load_dataset_for(
            kind,
            [self.dataset_name, *self.dataset_mixture] if self.dataset_mixture else self.dataset_name,
            splits=(self.dataset_train_split, self.dataset_test_split),
            dataset_config=self.dataset_config,
            column_mapping=parse_column_mapping(self.dataset_column_mapping),
            dataset_format=self.dataset_format,
            holdout_fraction=self.holdout_fraction,
            validation_fraction=self.validation_fraction,
            seed=self.task_seed if builtin else seed,
            split_seed=self.split_seed,
            task_kwargs=self.task_kwargs(),
            on_bad_row=self.bad_rows,
            report=self.data_report,
        )
        train = data[self.dataset_train_split]
        if self.max_train_samples is not None and len(train) > self.max_train_samples:
            train = train.select(range(self.max_train_samples))
        self.data_report["train_rows_used"] = len(train)
        return DatasetDict({"train": train, "test": data[self.dataset_test_split]})

    def data_metrics(self) -> dict[str, Any]:
        """Flat counts for metrics.json: pairs read and dropped (ties, no majority, malformed), rows per split."""
        report = getattr(self, "data_report", {})
        sources = report.get("sources", {}).values()
        out = {
            f"data_{k}": sum(s[k] for s in sources) for k in ("rows_read", "ties", "no_majority", "bad_rows")
        }
        out = out if sources else {}
        out.update({f"data_{split}_rows": n for split, n in report.get("rows", {}).items()})
        if "dropped_shared_answer" in report:
            out["data_dropped_shared_answer"] = report["dropped_shared_answer"]
        return out

    def save_split(self, output_dir: str | os.PathLike) -> Path | None:
        """Write the split this run carved into ``output_dir/split/`` + ``split.json`` (None: nothing carved).

        A later stage reads the same rows with ``dataset_name: <output_dir>/split``; a rerun carves the same.
        """
        report = getattr(self, "data_report", {})
        if "carved" not in report:
            return None
        manifest = {
            "dataset_name": self.dataset_name,
            "dataset_mixture": self.dataset_mixture,
            "carved": report["carved"],
            "dropped_shared_answer": report["dropped_shared_answer"],
            "sources": report.get("sources", {}),
            "train_rows_used": report.get("train_rows_used"),
        }
        return preferences.write_split(output_dir, report["data"], manifest)
