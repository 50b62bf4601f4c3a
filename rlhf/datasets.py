"""Datasets for the fine-tuning stages, in TRL's conversational formats, checked before any training.

    data = load_dataset_for("sft", "builtin")                          # the built-in task
    data = load_dataset_for("preference", "data/pairs.jsonl")          # local .json/.jsonl/.parquet/.csv
    data = load_dataset_for("preference", "Anthropic/hh-rlhf")         # a Hub id (raw HH-RLHF is converted)
    data = load_dataset_for("sft", "qa.csv", column_mapping={"question": "prompt", "answer": "completion"})

Every kind comes out as a ``DatasetDict`` in one of TRL's standard conversational formats:

- ``sft``: ``prompt`` (messages) + ``completion`` (the assistant's message), or ``messages`` (whole chats)
- ``preference``: ``prompt`` + ``chosen`` + ``rejected`` (an implicit prompt is split out of chosen/rejected)
- ``prompts``: ``prompt`` only (for RL and evaluation; a preference dataset gives its prompts)

Plain strings become single messages (``prompt`` -> a user turn, answers -> an assistant turn), so every
stage renders the same chat template. A missing column stops with a message that names the dataset, the
split, the column and the columns that are there.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from datasets import Dataset, DatasetDict, load_dataset

from rlhf.config import ConfigError

logger = logging.getLogger(__name__)

KINDS = ("sft", "preference", "prompts")
# The columns each kind needs, as alternatives: any one complete tuple will do.
REQUIRED_COLUMNS: dict[str, tuple[tuple[str, ...], ...]] = {
    "sft": (("prompt", "completion"), ("messages",)),
    "preference": (("chosen", "rejected"),),
    "prompts": (("prompt",),),
}
FILE_BUILDERS = {".json": "json", ".jsonl": "json", ".parquet": "parquet", ".csv": "csv"}
DATASET_FORMATS = ("auto", "trl", "hh-rlhf")


class DatasetFormatError(ConfigError, ValueError):
    """A dataset cannot be used for a stage: missing column, unknown file type, unparseable rows.

    A `ConfigError`, so ``rlhf <stage>`` stops with the one-line message (exit status 2), not a traceback.
    """


# ----------------------------------------------------------------------------------------------
# Anthropic HH-RLHF raw format


_HH_TURN = re.compile(r"\n\n(Human|Assistant):[ ]?")
_HH_ROLES = {"Human": "user", "Assistant": "assistant"}


def is_hh_rlhf_text(text: Any) -> bool:
    """Whether ``text`` is a raw HH-RLHF dialogue (``"\\n\\nHuman: ... \\n\\nAssistant: ..."``)."""
    return isinstance(text, str) and text.lstrip(" ").startswith("\n\nHuman:") and "\n\nAssistant:" in text


def parse_hh_dialogue(text: str) -> list[dict[str, str]]:
    """Split a raw HH-RLHF string into chat messages.

    ``"\\n\\nHuman: Hi\\n\\nAssistant: Hello!"`` -> ``[{"role": "user", "content": "Hi"},
    {"role": "assistant", "content": "Hello!"}]``. Contents are stripped of surrounding whitespace.

    Raises:
        DatasetFormatError: the text does not start with a ``Human:`` turn.
    """
    text = text.lstrip(" ")
    parts = _HH_TURN.split(text)
    # parts = [prefix, role, content, role, content, ...]; the prefix must be empty
    if len(parts) < 3 or parts[0].strip():
        raise DatasetFormatError(f"not an HH-RLHF dialogue (expected '\\n\\nHuman: ...'): {text[:60]!r}")
    return [
        {"role": _HH_ROLES[role], "content": content.strip()}
        for role, content in zip(parts[1::2], parts[2::2], strict=True)
    ]


def hh_rlhf_to_preference(example: Mapping[str, str]) -> dict[str, list[dict[str, str]]]:
    """One raw HH-RLHF row (``chosen``/``rejected`` dialogue strings) -> ``prompt``/``chosen``/``rejected`` messages.

    The prompt is the turns both dialogues share; chosen and rejected are what follows (normally the last
    assistant turn).

    Raises:
        DatasetFormatError: no shared user turn, or a remainder that does not start with the assistant.
    """
    chosen, rejected = parse_hh_dialogue(example["chosen"]), parse_hh_dialogue(example["rejected"])
    shared = 0
    while shared < min(len(chosen), len(rejected)) - 1 and chosen[shared] == rejected[shared]:
        shared += 1
    # the answers being compared start at the last shared position that is an assistant turn
    while shared > 0 and chosen[shared]["role"] != "assistant":
        shared -= 1
    prompt, chosen_rest, rejected_rest = chosen[:shared], chosen[shared:], rejected[shared:]
    if not prompt or prompt[-1]["role"] != "user":
        raise DatasetFormatError("HH-RLHF row: the dialogues share no user turn before the compared answers")
    if chosen_rest[0]["role"] != "assistant" or rejected_rest[0]["role"] != "assistant":
        raise DatasetFormatError("HH-RLHF row: the compared parts do not start with an assistant turn")
    return {"prompt": prompt, "chosen": chosen_rest, "rejected": rejected_rest}


def hh_rlhf_to_prompt(example: Mapping[str, str]) -> dict[str, list[dict[str, str]]]:
    """One raw HH-RLHF row -> the ``prompt`` messages (prompt-only data for RL and evaluation)."""
    return {"prompt": hh_rlhf_to_preference(example)["prompt"]}


def convert_hh_rlhf(dataset: Dataset, kind: str, source: str) -> Dataset:
    """Convert a raw HH-RLHF split to the ``kind``'s conversational format, dropping rows that do not parse."""
    convert = hh_rlhf_to_prompt if kind == "prompts" else hh_rlhf_to_preference
    rows, dropped = [], 0
    for example in dataset:
        try:
            rows.append(convert(example))
        except DatasetFormatError:
            dropped += 1
    if not rows:
        raise DatasetFormatError(f"{source}: no row parses as an HH-RLHF dialogue pair")
    if dropped:
        logger.warning("%s: dropped %d of %d HH-RLHF rows that do not parse", source, dropped, len(dataset))
    return Dataset.from_list(rows)


# ----------------------------------------------------------------------------------------------
# standard formats


def _as_messages(value: Any, role: str) -> Any:
    """A plain string becomes one message of ``role``; messages stay as they are."""
    if isinstance(value, str):
        return [{"role": role, "content": value}]
    return value


def _decode_json_messages(value: Any) -> Any:
    """CSV cells hold text: a JSON list of messages in a cell becomes that list."""
    if isinstance(value, str) and value.lstrip().startswith("[{"):
        try:
            decoded = json.loads(value)
        except json.JSONDecodeError:
            return value
        if isinstance(decoded, list) and all(isinstance(m, dict) and "role" in m for m in decoded):
            return decoded
    return value


_ROLES = {"prompt": "user", "completion": "assistant", "chosen": "assistant", "rejected": "assistant"}


def to_conversational(example: dict[str, Any]) -> dict[str, Any]:
    """Normalise one row: JSON-in-text cells decoded, plain strings wrapped as user/assistant messages."""
    out = {}
    for column, role in _ROLES.items():
        if column in example:
            out[column] = _as_messages(_decode_json_messages(example[column]), role)
    if "messages" in example:
        out["messages"] = _decode_json_messages(example["messages"])
    return out


def split_implicit_prompt(example: dict[str, Any]) -> dict[str, Any]:
    """Preference rows whose chosen/rejected hold the whole chat get the shared turns moved to ``prompt``."""
    from trl.data_utils import maybe_extract_prompt

    return maybe_extract_prompt(example)


def prompt_of_conversation(messages: list[dict[str, str]]) -> list[dict[str, str]]:
    """The turns before the last assistant message (the prompt a chat was answering)."""
    for i in range(len(messages) - 1, -1, -1):
        if messages[i]["role"] == "assistant":
            return messages[:i]
    return messages


# ----------------------------------------------------------------------------------------------
# checks


def check_columns(dataset: Dataset, kind: str, source: str, split: str) -> None:
    """Stop unless ``dataset`` has one of the column sets ``kind`` needs (and messages where messages belong).

    Raises:
        DatasetFormatError: names the dataset, the split, the missing column(s) and the columns present.
    """
    present = list(dataset.column_names)
    options = REQUIRED_COLUMNS[kind]
    if not any(all(c in present for c in option) for option in options):
        best = max(options, key=lambda option: sum(c in present for c in option))
        missing = [c for c in best if c not in present]
        alternatives = " or ".join("+".join(option) for option in options)
        raise DatasetFormatError(
            f"dataset '{source}' (split '{split}'): missing column {', '.join(repr(c) for c in missing)} "
            f"needed for {kind} data ({alternatives}); columns present: {present}. "
            "Rename yours with dataset_column_mapping, e.g. "
            f'--dataset_column_mapping \'{{"your_column": "{missing[0]}"}}\''
        )
    if len(dataset) == 0:
        raise DatasetFormatError(f"dataset '{source}' (split '{split}') has no rows")
    first = dataset[0]
    for column in ("prompt", "completion", "chosen", "rejected", "messages"):
        value = first.get(column)
        if column in present and not (
            isinstance(value, list)
            and value
            and all(isinstance(m, dict) and {"role", "content"} <= set(m) for m in value)
        ):
            raise DatasetFormatError(
                f"dataset '{source}' (split '{split}'): column '{column}' must hold chat messages "
                f"(a list of {{'role', 'content'}}) or plain text; row 0 has {str(value)[:80]!r}"
            )


# ----------------------------------------------------------------------------------------------
# loading


def _local_data_files(path: Path) -> tuple[str, dict[str, str]]:
    """The ``datasets`` builder and ``{split: file}`` for a local file or a folder of ``<split>.<ext>`` files."""
    if path.is_file():
        builder = FILE_BUILDERS.get(path.suffix.lower())
        if builder is None:
            raise DatasetFormatError(
                f"dataset '{path}': unsupported file type '{path.suffix}' (use one of {sorted(FILE_BUILDERS)})"
            )
        return builder, {"train": str(path)}
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in FILE_BUILDERS)
    if not files:
        raise DatasetFormatError(f"dataset '{path}': the folder holds no {sorted(FILE_BUILDERS)} files")
    builders = {FILE_BUILDERS[p.suffix.lower()] for p in files}
    if len(builders) != 1:
        raise DatasetFormatError(
            f"dataset '{path}': split files must share one format (found {sorted(builders)})"
        )
    return builders.pop(), {p.stem: str(p) for p in files}


def load_raw_dataset(
    dataset_name: str,
    kind: str,
    dataset_config: str | None = None,
    seed: int = 0,
    task_kwargs: Mapping[str, Any] | None = None,
) -> DatasetDict:
    """The dataset as stored, before mapping, conversion and checks."""
    if dataset_name == "builtin":
        from rlhf.task import load_builtin

        return load_builtin(kind, seed=seed, **dict(task_kwargs or {}))
    path = Path(dataset_name)
    if path.exists():
        builder, data_files = _local_data_files(path)
        return load_dataset(builder, data_files=data_files)
    if path.suffix.lower() in FILE_BUILDERS or os.sep in dataset_name and dataset_name.count("/") > 1:
        raise DatasetFormatError(f"dataset '{dataset_name}': no such file or folder")
    data = load_dataset(dataset_name, name=dataset_config)
    if not isinstance(data, DatasetDict):
        data = DatasetDict({"train": data})
    return data


def prepare_split(
    dataset: Dataset,
    kind: str,
    source: str,
    split: str,
    column_mapping: Mapping[str, str] | None = None,
    dataset_format: str = "auto",
) -> Dataset:
    """Map columns, convert raw formats, normalise to messages, keep only the kind's columns, and check."""
    if column_mapping:
        missing = [c for c in column_mapping if c not in dataset.column_names]
        if missing:
            raise DatasetFormatError(
                f"dataset '{source}' (split '{split}'): dataset_column_mapping names column "
                f"{', '.join(repr(c) for c in missing)}, which is not there; columns present: {dataset.column_names}"
            )
        dataset = dataset.rename_columns({k: v for k, v in column_mapping.items() if k != v})
    if dataset_format not in DATASET_FORMATS:
        raise DatasetFormatError(f"dataset_format '{dataset_format}' is not one of {list(DATASET_FORMATS)}")
    raw_hh = (
        "chosen" in dataset.column_names
        and "prompt" not in dataset.column_names
        and len(dataset) > 0
        and is_hh_rlhf_text(dataset[0]["chosen"])
    )
    if dataset_format == "hh-rlhf" or (
        dataset_format == "auto" and raw_hh and kind in ("preference", "prompts")
    ):
        check_columns_present(dataset, ("chosen", "rejected"), source, split, "HH-RLHF")
        dataset = convert_hh_rlhf(dataset, kind, source)

    wanted = [
        c for c in ("prompt", "completion", "chosen", "rejected", "messages") if c in dataset.column_names
    ]
    if kind == "preference" and "margin" in dataset.column_names:
        # RewardTrainer subtracts it inside the loss: -log sigmoid(r_chosen - r_rejected - margin)
        wanted.append("margin")
    if kind == "prompts" and "prompt" not in wanted:
        if "messages" in wanted:  # prompts of whole chats
            dataset = dataset.map(lambda ex: {"prompt": prompt_of_conversation(ex["messages"])})
        elif {"chosen", "rejected"} <= set(wanted):  # prompts of implicit-prompt preference pairs
            dataset = dataset.map(
                lambda ex: {"prompt": split_implicit_prompt(to_conversational(ex))["prompt"]}
            )
        wanted = [c for c in ("prompt",) if c in dataset.column_names]
    check_columns_present_for_kind(dataset, kind, source, split)
    dataset = dataset.select_columns(wanted) if kind != "prompts" else dataset.select_columns(["prompt"])
    dataset = dataset.map(to_conversational)
    if kind == "preference" and "prompt" not in dataset.column_names:
        dataset = dataset.map(split_implicit_prompt)
    check_columns(dataset, kind, source, split)
    return dataset


def check_columns_present(
    dataset: Dataset, columns: Sequence[str], source: str, split: str, what: str
) -> None:
    """Stop when any of ``columns`` is missing (the message lists the columns present)."""
    missing = [c for c in columns if c not in dataset.column_names]
    if missing:
        raise DatasetFormatError(
            f"dataset '{source}' (split '{split}'): missing column {', '.join(repr(c) for c in missing)} "
            f"needed for {what} data; columns present: {dataset.column_names}"
        )


def check_columns_present_for_kind(dataset: Dataset, kind: str, source: str, split: str) -> None:
    """The column-name part of `check_columns` (run before any conversion touches the rows)."""
    present = dataset.column_names
    if any(all(c in present for c in option) for option in REQUIRED_COLUMNS[kind]):
        return
    check_columns(dataset, kind, source, split)  # raises with the full message


def load_dataset_for(
    kind: str,
    dataset_name: str,
    *,
    splits: Sequence[str] = ("train", "test"),
    dataset_config: str | None = None,
    column_mapping: Mapping[str, str] | None = None,
    dataset_format: str = "auto",
    holdout_fraction: float = 0.1,
    seed: int = 0,
    task_kwargs: Mapping[str, Any] | None = None,
) -> DatasetDict:
    """Load the ``splits`` of a dataset for a stage, converted and checked (see the module docstring).

    Args:
        kind: ``"sft"``, ``"preference"`` or ``"prompts"``.
        dataset_name: ``"builtin"``, a local file or folder of ``<split>.<ext>`` files, or a Hub id.
        splits: the split names the stage uses, the training split first; a missing later split (the held-out
            one) is carved from the first with ``holdout_fraction`` of its rows.
        column_mapping: ``{"their_column": "our_column"}`` renames applied before anything else.
        dataset_format: ``"auto"`` (detects raw HH-RLHF), ``"hh-rlhf"`` or ``"trl"`` (no conversion).
        seed: the built-in task's world seed, and the seed of a held-out carve-out.
        task_kwargs: the built-in task's size knobs.

    Returns:
        ``DatasetDict`` with exactly ``splits``.

    Raises:
        DatasetFormatError: a missing column or split, an unknown file type, rows that cannot be converted.
    """
    if kind not in KINDS:
        raise ValueError(f"kind '{kind}' is not one of {list(KINDS)}")
    raw = load_raw_dataset(dataset_name, kind, dataset_config, seed, task_kwargs)
    first = splits[0]
    if first not in raw:
        raise DatasetFormatError(
            f"dataset '{dataset_name}': no split '{first}'; splits present: {list(raw)} (set dataset_train_split)"
        )
    missing = [s for s in splits[1:] if s not in raw]
    if missing:
        if not 0 < holdout_fraction < 1:
            raise DatasetFormatError(
                f"dataset '{dataset_name}': no split {missing}; splits present: {list(raw)}"
            )
        carved = raw[first].train_test_split(test_size=holdout_fraction, seed=seed)
        logger.info(
            "%s: holding out %d rows of '%s' as '%s'", dataset_name, len(carved["test"]), first, missing[0]
        )
        raw = DatasetDict({**raw, first: carved["train"], missing[0]: carved["test"]})
    return DatasetDict(
        {
            split: prepare_split(raw[split], kind, dataset_name, split, column_mapping, dataset_format)
            for split in splits
        }
    )


def parse_column_mapping(value: Mapping[str, str] | str | None) -> dict[str, str] | None:
    """A ``dataset_column_mapping`` from YAML (a mapping) or the command line (JSON text)."""
    if value is None or isinstance(value, Mapping):
        return dict(value) if value else None
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError:
        raise DatasetFormatError(
            f'dataset_column_mapping must be a mapping, e.g. {{"question": "prompt"}}; got {value!r}'
        ) from None
    if not isinstance(parsed, dict):
        raise DatasetFormatError(f"dataset_column_mapping must be a mapping; got {value!r}")
    return parsed


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
            `"auto"` (detects Anthropic HH-RLHF raw dialogues), `"hh-rlhf"`, or `"trl"` (TRL's standard formats).
        holdout_fraction (`float`, *optional*, defaults to `0.1`):
            Share of the training rows held out when the dataset has no `dataset_test_split`.
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
        metadata={"help": "auto (detects raw HH-RLHF), hh-rlhf, or trl.", "choices": list(DATASET_FORMATS)},
    )
    holdout_fraction: float = field(
        default=0.1, metadata={"help": "Share of training rows held out when there is no test split."}
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
        """Load the train and held-out splits for ``kind`` (see `load_dataset_for`), checked."""
        data = load_dataset_for(
            kind,
            self.dataset_name,
            splits=(self.dataset_train_split, self.dataset_test_split),
            dataset_config=self.dataset_config,
            column_mapping=parse_column_mapping(self.dataset_column_mapping),
            dataset_format=self.dataset_format,
            holdout_fraction=self.holdout_fraction,
            seed=self.task_seed if self.dataset_name == "builtin" else seed,
            task_kwargs=self.task_kwargs(),
        )
        train = data[self.dataset_train_split]
        if self.max_train_samples is not None and len(train) > self.max_train_samples:
            train = train.select(range(self.max_train_samples))
        return DatasetDict({"train": train, "test": data[self.dataset_test_split]})
