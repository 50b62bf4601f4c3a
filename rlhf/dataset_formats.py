"""What a stage's rows look like: TRL's conversational formats, converters into them, and the checks.

Every kind of data comes out in one of TRL's standard conversational formats:

- ``sft``: ``prompt`` (messages) + ``completion`` (the assistant's message), or ``messages`` (whole chats)
- ``preference``: ``prompt`` + ``chosen`` + ``rejected`` (an implicit prompt is split out of chosen/rejected)
- ``prompts``: ``prompt`` only (for RL and evaluation; a preference dataset gives its prompts)

Converters: raw Anthropic HH-RLHF dialogues (:func:`hh_rlhf_to_preference`), plain strings and JSON-in-CSV
cells (:func:`to_conversational`), implicit prompts (:func:`split_implicit_prompt`). Human preference files
(PandaLM, pairwise judgments) are :mod:`rlhf.preferences`; loading and splitting is :mod:`rlhf.datasets`.
The token ids a row becomes through the tokenizer's chat template, the same in training and in evaluation,
are :func:`prompt_ids` and :func:`conversation_ids`.
A row that does not fit raises :class:`DatasetFormatError` naming the dataset, the split, the column and
the columns that are there.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from datasets import Dataset

from rlhf.config import ConfigError

logger = logging.getLogger(__name__)

KINDS = ("sft", "preference", "prompts")
# The columns each kind needs, as alternatives: any one complete tuple will do.
REQUIRED_COLUMNS: dict[str, tuple[tuple[str, ...], ...]] = {
    "sft": (("prompt", "completion"), ("messages",)),
    "preference": (("chosen", "rejected"),),
    "prompts": (("prompt",),),
}
DATASET_FORMATS = ("auto", "trl", "hh-rlhf", "pandalm", "pairwise")  # the last two: see rlhf.preferences


class DatasetFormatError(ConfigError, ValueError):
    """A dataset cannot be used for a stage: missing column, unknown file type, unparseable rows.

    A `ConfigError`, so ``rlhf <stage>`` stops with the one-line message (exit status 2), not a traceback.
    """


class MalformedRowError(ConfigError, ValueError):
    """One row of a preference file cannot be read; the message names the file, the row and the field."""


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
# token ids: what the trainers and the evaluations feed a model


Messages = list[dict[str, str]]


def _ids(encoded: Any) -> list[int]:
    """``apply_chat_template(tokenize=True)`` returns a list or a BatchEncoding depending on the version."""
    if hasattr(encoded, "keys"):
        encoded = encoded["input_ids"]
    return list(encoded)


def prompt_ids(tokenizer, prompt: Messages | str) -> list[int]:
    """Token ids of a prompt rendered for answering: chat template plus the assistant's generation prompt."""
    if isinstance(prompt, str):
        prompt = [{"role": "user", "content": prompt}]
    return _ids(tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True))


def conversation_ids(tokenizer, prompt: Messages, answer: Messages) -> list[int]:
    """Token ids of ``prompt + answer`` through the chat template, cut right after the answer's end-of-turn token.

    That is where a generated answer stops (generation ends at EOS), so a reward model trained on these ids
    is read at the same position in training, in PPO's rollouts and in evaluation.
    """
    ids = _ids(tokenizer.apply_chat_template(list(prompt) + list(answer), tokenize=True))
    eos = tokenizer.eos_token_id
    if eos is not None and eos in ids:
        ids = ids[: len(ids) - ids[::-1].index(eos)]
    return ids


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


def check_answers(rows: Iterable[Mapping[str, Any]], source: str, split: str) -> None:
    """Stop at the first row of TRL preference data whose ``chosen``/``rejected`` is missing or empty."""
    for i, row in enumerate(rows):
        for name in ("chosen", "rejected"):
            value = row.get(name)
            empty = value is None or (isinstance(value, str) and not value.strip())
            if isinstance(value, list):
                empty = not value or not any(str(m.get("content") or "").strip() for m in value)
            if empty:
                raise MalformedRowError(
                    f"{source} (split '{split}'): row {i}: field '{name}' is empty or missing "
                    "(expected an answer's text or messages)"
                )


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
        check_answers(dataset, source, split)
    return dataset
