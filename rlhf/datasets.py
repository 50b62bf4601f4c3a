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

from rlhf import preferences
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
DATASET_FORMATS = ("auto", "trl", "hh-rlhf", "pandalm", "pairwise")  # the last two: see rlhf.preferences


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
        builder, data_files = _local_data_files(path)
        converted = preferences.load_files(data_files, dataset_format, on_bad_row, counts)
        return converted if converted is not None else load_dataset(builder, data_files=data_files)
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
    present = set(dataset.column_names)
    if kind == "sft" and {"prompt", "chosen"} <= present and not present & {"completion", "messages"}:
        logger.info("%s (split '%s'): SFT on the chosen answers of preference pairs", source, split)
        dataset = dataset.remove_columns(["rejected"] if "rejected" in present else []).rename_column(
            "chosen", "completion"
        )
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
    if kind == "preference":
        preferences.check_answers(dataset, source, split)
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
