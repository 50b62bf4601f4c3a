"""Labelled moderation data: load a dataset and turn its label columns into per-category 0/1 rows.

Works with the built-in task's moderation data (``text``, ``side``, ``prompt``, ``unsafe``,
``categories``) and with any dataset whose labels are columns or a list-valued column, mapped onto
category ids through config alone:

- ``label_columns: {toxic: hate, threat: violent_crimes, obscene: null}`` (column -> category/ies),
- ``label_columns: [violence, hate]`` with ``label_mapping: openai`` (a table from categories.yaml),
- ``categories_column: categories`` holding a list of labels per row (mapped the same way).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rlhf.config import ConfigError
from rlhf.data_files import read_data_files
from rlhf.moderation.taxonomy import BUILTIN_CATEGORIES, label_mapping

FILE_FORMATS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}


class DatasetError(ConfigError):
    """A dataset or its column mapping is wrong; the message names the column and what was expected."""


@dataclass
class Examples:
    """Moderation examples as parallel lists; ``labels[i][k]`` is 1 when item i is in ``categories[k]``."""

    texts: list[str]
    sides: list[str]
    prompts: list[str]
    labels: list[list[int]]
    unsafe: list[int]
    categories: list[str] = field(default_factory=list)
    groups: list[str] | None = None  # per row: its source (or any grouping column), for per-group tables

    def __len__(self) -> int:
        return len(self.texts)

    def items(self) -> list[str | list[dict[str, str]]]:
        """What a moderator gets: the text, or for an output-side item with a prompt, the conversation."""
        out = []
        for text, side, prompt in zip(self.texts, self.sides, self.prompts, strict=True):
            if side == "output" and prompt:
                out.append([{"role": "user", "content": prompt}, {"role": "assistant", "content": text}])
            else:
                out.append(text)
        return out

    def subset(self, indices: Sequence[int]) -> Examples:
        pick = lambda xs: [xs[i] for i in indices]  # noqa: E731
        return Examples(
            pick(self.texts),
            pick(self.sides),
            pick(self.prompts),
            pick(self.labels),
            pick(self.unsafe),
            self.categories,
            pick(self.groups) if self.groups is not None else None,
        )


def load_split(
    dataset_name: str,
    split: str,
    dataset_config: str | None = None,
    task_seed: int = 0,
):
    """One split of a labelled dataset as a ``datasets.Dataset``.

    ``dataset_name``: "builtin" (the built-in task's moderation data), a local JSONL/JSON/CSV/Parquet file
    (used whole, whatever the split), a folder of ``<split>.<ext>`` files, or a Hub dataset id.
    Raises DatasetError when the split does not exist.
    """
    import datasets

    if dataset_name == "builtin":
        from rlhf.task import load_builtin

        data = load_builtin("moderation", seed=task_seed)
        if split not in data:
            raise DatasetError(f"the built-in moderation data has splits {list(data)}, not '{split}'")
        return data[split]
    path = shared_data_path(dataset_name)
    if not path.exists() and (
        dataset_name.startswith((".", "/", "~")) or path.suffix.lower() in FILE_FORMATS
    ):
        raise DatasetError(f"dataset_name '{dataset_name}': no such file or folder")
    if path.is_file():
        fmt = FILE_FORMATS.get(path.suffix.lower())
        if fmt is None:
            raise DatasetError(f"{path}: unsupported file type; use one of {', '.join(FILE_FORMATS)}")
        return read_data_files(fmt, str(path), str(path), error=DatasetError, split="train")
    if path.is_dir():
        for suffix, fmt in FILE_FORMATS.items():
            candidate = path / f"{split}{suffix}"
            if candidate.is_file():
                return read_data_files(fmt, str(candidate), str(candidate), error=DatasetError, split="train")
        raise DatasetError(f"{path}: no {split}.jsonl/.json/.csv/.parquet in this folder")
    try:
        return datasets.load_dataset(dataset_name, dataset_config, split=split)
    except (ValueError, OSError, ConnectionError) as err:  # unknown split, offline, no such Hub dataset
        raise DatasetError(f"dataset '{dataset_name}': {str(err).strip().splitlines()[0]}") from None


SHARED_DATA = "../shared/data"


def shared_data_path(path: str) -> Path:
    """``path``, with a leading ``../shared/data`` (the project's real data sets, next to the repo) replaced
    by ``$RLHF_SHARED_DATA`` when that is set: configs name the data where a checkout finds it, and a
    checkout elsewhere points the variable at the folder."""
    root = os.environ.get("RLHF_SHARED_DATA")
    parts = Path(path).parts
    if root and parts[:3] == tuple(Path(SHARED_DATA).parts):
        return Path(root).expanduser().joinpath(*parts[3:])
    return Path(path).expanduser()


def parse_label_columns(value: Any) -> dict[str, Any] | list[str] | None:
    """``label_columns`` as given in YAML (a mapping or a list) or on the command line (a string holding
    YAML/JSON such as ``'{toxic: hate, threat: violent_crimes}'``, or comma-separated column names)."""
    if value is None or isinstance(value, Mapping | list):
        return value
    if isinstance(value, str):
        import yaml

        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError:
            parsed = None
        if isinstance(parsed, Mapping | list):
            return parsed
        return [c.strip() for c in value.split(",") if c.strip()]
    raise DatasetError(f"label_columns must be a mapping of column to category or a list, got {value!r}")


def _truthy(value: Any) -> int:
    if value is None:
        return 0
    if isinstance(value, str):
        return int(value.strip().lower() in ("1", "true", "yes", "y", "unsafe", "flagged"))
    if isinstance(value, int | float):
        return int(value >= 0.5)
    return int(bool(value))


def _normalise_column_map(
    label_columns: Mapping[str, Any] | Sequence[str] | str | None, table: Mapping[str, list[str]] | None
) -> dict[str, list[str]]:
    if label_columns is None:
        return {}
    if isinstance(label_columns, str):
        label_columns = [label_columns]
    if isinstance(label_columns, Mapping):
        out = {}
        for column, target in label_columns.items():
            out[str(column)] = (
                [] if target is None else [target] if isinstance(target, str) else [str(t) for t in target]
            )
        return out
    out = {}
    for column in label_columns:
        if table is not None:
            if column not in table:
                raise DatasetError(
                    f"label column '{column}' has no entry in the label mapping ({', '.join(table)})"
                )
            out[column] = table[column]
        else:
            out[column] = [column]
    return out


def build_examples(
    dataset,
    *,
    text_column: str = "text",
    label_columns: Mapping[str, Any] | Sequence[str] | str | None = None,
    categories_column: str | None = "categories",
    unsafe_column: str | None = "unsafe",
    label_mapping_name: str | Mapping[str, Any] | None = None,
    categories: Sequence[str] | None = None,
    side_column: str | None = "side",
    prompt_column: str | None = "prompt",
    default_side: str = "input",
    source: str = "dataset",
    group_column: str | None = None,
) -> Examples:
    """Turn a dataset (anything with ``column_names`` and ``__getitem__(column)``) into :class:`Examples`.

    Category labels come from ``label_columns`` (each a 0/1, boolean or probability column) and/or
    ``categories_column`` (a list of labels, or one label, per row); labels are mapped onto category ids
    by ``label_mapping_name`` (a table name from categories.yaml or an inline mapping) or taken as ids.
    ``categories`` fixes the label columns of the result (default: the built-in ids when the data uses
    only those, else every id seen, in first-seen order). ``unsafe`` is the ``unsafe_column`` when the
    dataset has it, else whether any category is set. Columns named but missing raise DatasetError.
    """
    columns = set(dataset.column_names)
    if text_column not in columns:
        raise DatasetError(f"{source}: text column '{text_column}' not found; columns are {sorted(columns)}")
    table = label_mapping(label_mapping_name) if label_mapping_name is not None else None
    column_map = _normalise_column_map(label_columns, table)
    missing = [c for c in column_map if c not in columns]
    if missing:
        raise DatasetError(f"{source}: label column(s) {missing} not found; columns are {sorted(columns)}")
    use_categories_column = bool(categories_column) and categories_column in columns
    if not column_map and not use_categories_column and not (unsafe_column and unsafe_column in columns):
        raise DatasetError(
            f"{source}: no labels: set label_columns (columns mapped to categories) or categories_column; "
            f"columns are {sorted(columns)}"
        )

    n = len(dataset)
    row_sets: list[list[str]] = [[] for _ in range(n)]
    for column, targets in column_map.items():
        for i, value in enumerate(dataset[column]):
            if _truthy(value):
                row_sets[i].extend(targets)
    if use_categories_column:
        for i, value in enumerate(dataset[categories_column]):
            labels = [] if value is None else [value] if isinstance(value, str) else list(value)
            for label in labels:
                if table is not None:
                    if label not in table:
                        raise DatasetError(
                            f"{source}: label {label!r} in column '{categories_column}' has no mapping"
                        )
                    row_sets[i].extend(table[label])
                else:
                    row_sets[i].append(str(label))

    if categories is None:
        seen: list[str] = [t for targets in column_map.values() for t in targets]
        for row in row_sets:
            seen.extend(row)
        seen = list(dict.fromkeys(seen))
        categories = list(BUILTIN_CATEGORIES) if set(seen) <= set(BUILTIN_CATEGORIES) else seen
    categories = list(categories)
    labels = [[int(cid in row) for cid in categories] for row in row_sets]
    if unsafe_column and unsafe_column in columns:
        unsafe = [_truthy(v) for v in dataset[unsafe_column]]
    else:
        unsafe = [int(bool(row)) for row in row_sets]
    if side_column and side_column in columns:
        sides = [str(s or default_side) for s in dataset[side_column]]
        bad = sorted({s for s in sides if s not in ("input", "output")})
        if bad:
            raise DatasetError(f"{source}: column '{side_column}' must hold 'input' or 'output', found {bad}")
    else:
        sides = [default_side] * n
    prompts = (
        [str(p or "") for p in dataset[prompt_column]]
        if prompt_column and prompt_column in columns
        else [""] * n
    )
    texts = [str(t or "") for t in dataset[text_column]]
    groups = None
    if group_column:
        if group_column not in columns:
            raise DatasetError(
                f"{source}: group column '{group_column}' not found; columns are {sorted(columns)}"
            )
        groups = [str(g) for g in dataset[group_column]]
    return Examples(texts, sides, prompts, labels, unsafe, categories, groups)


@dataclass
class LabelledTextArguments:
    """
    Where labelled moderation text comes from and how its labels map onto categories: the fields that
    `rlhf moderation-train` and `rlhf moderation-eval` share.

    Args:
        dataset_name (`str`, *optional*, defaults to `"builtin"`):
            `"builtin"` (the built-in task's moderation data), a local JSONL/JSON/CSV/Parquet file, a folder of
            `<split>.<ext>` files, or a Hub id.
        dataset_config (`str` or `None`, *optional*, defaults to `None`):
            Configuration name of a Hub dataset.
        task_seed (`int`, *optional*, defaults to `0`):
            Built-in task only: seed of the generated data.
        text_column (`str`, *optional*, defaults to `"text"`):
            Column holding the text.
        label_columns (`dict` or `list` or `None`, *optional*, defaults to `None`):
            Label columns mapped to category ids (`{column: category | [categories] | null}`), or a list of
            column names mapped by `label_mapping` (or taken as category ids).
        categories_column (`str` or `None`, *optional*, defaults to `"categories"`):
            Column holding a list of labels per row; ignored when the dataset lacks it.
        unsafe_column (`str` or `None`, *optional*, defaults to `"unsafe"`):
            Column holding the overall unsafe label; without it an item is unsafe when any category is set.
        label_mapping (`str` or `None`, *optional*, defaults to `None`):
            Table from categories.yaml (`openai`, `llama_guard`, `jigsaw`, `beavertails`) mapping the
            dataset's labels to category ids; `None`: labels are category ids.
        categories (`list[str]` or `None`, *optional*, defaults to `None`):
            The categories, in order (the classifier's labels; the ones reported); `None`: those the labels
            map to.
    """

    dataset_name: str = field(
        default="builtin", metadata={"help": "'builtin', a local file/folder, or a Hub id."}
    )
    dataset_config: str | None = field(
        default=None, metadata={"help": "Configuration name of a Hub dataset."}
    )
    task_seed: int = field(default=0, metadata={"help": "Built-in task only: seed of the generated data."})
    text_column: str = field(default="text", metadata={"help": "Column holding the text."})
    label_columns: dict[str, Any] | str | None = field(
        default=None,
        metadata={
            "help": "Label columns mapped to category ids, e.g. '{toxic: hate, threat: violent_crimes}', "
            "or column names (mapped by label_mapping)."
        },
    )
    categories_column: str | None = field(
        default="categories", metadata={"help": "Column holding a list of labels per row."}
    )
    unsafe_column: str | None = field(
        default="unsafe", metadata={"help": "Column holding the overall unsafe label."}
    )
    label_mapping: str | None = field(
        default=None,
        metadata={"help": "Label table from categories.yaml (openai, llama_guard, jigsaw, ...)."},
    )
    categories: list[str] | None = field(
        default=None, metadata={"help": "The categories, in order (default: those the labels map to)."}
    )

    def __post_init__(self):
        self.label_columns = parse_label_columns(self.label_columns)
