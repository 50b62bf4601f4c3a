"""Human preference data in the formats people publish it in, and splits that share no text.

    rows, counts = convert_records(json.load(open("testset-v1.json")), "pandalm", "testset-v1.json")
    splits = split_by_group(rows, {"validation": 0.1, "test": 0.2}, seed=0)
    write_split(output_dir, splits, manifest)

Formats (detected from a record's keys, or named with ``dataset_format``):

- ``pandalm``: ``instruction`` (+ ``input``), ``response1``/``response2``, three votes ``annotator1..3``
  (1 or 2: the better response, 0: a tie). The pair's label is the vote given by at least two annotators;
  a majority for "tie" or no majority drops the pair, and both are counted.
- ``pairwise`` (LLMBar, MT-Bench human judgments): ``input``, ``output_1``/``output_2``, ``label`` (1 or 2).

Both become TRL's preference format with plain-text ``prompt``/``chosen``/``rejected``. A malformed row (a
missing field, a label outside the allowed values, an empty answer) stops with one line naming the file,
the row (0-based index) and the field, or, with ``on_bad_row="drop"``, is dropped and counted.

A split puts rows into train / validation / test by *groups*: rows that share a prompt or an answer text
(whitespace-normalised) are always in the same split, so no prompt and no answer is seen on both sides.
Which split a group lands in depends on the seed and the group's own text, not on row order.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from rlhf.config import ConfigError
from rlhf.dataset_formats import (
    DatasetFormatError,
    MalformedRowError,
    hh_rlhf_to_preference,
    is_hh_rlhf_text,
    prompt_of_conversation,
    split_implicit_prompt,
)

logger = logging.getLogger(__name__)

FORMATS = ("pandalm", "pairwise")
BAD_ROW_POLICIES = ("error", "drop")


def detect_format(record: Mapping[str, Any]) -> str | None:
    """``"pandalm"``, ``"pairwise"`` or None (another format) from one record's keys."""
    keys = set(record)
    if {"response1", "response2", "annotator1"} <= keys:
        return "pandalm"
    if {"output_1", "output_2", "label"} <= keys:
        return "pairwise"
    return None


def read_records(path: str | Path) -> list[dict[str, Any]]:
    """The records of a ``.json`` file (a list of objects) or a ``.jsonl`` file (one object a line)."""
    path = Path(path)
    text = path.read_text()
    try:
        if path.suffix.lower() == ".jsonl":
            records = [json.loads(line) for line in text.splitlines() if line.strip()]
        else:
            records = json.loads(text)
    except json.JSONDecodeError as err:
        raise MalformedRowError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise MalformedRowError(f"{path}: expected a list of JSON objects")
    return records


def _field(record: Mapping[str, Any], name: str, where: str) -> Any:
    if name not in record or record[name] is None:
        raise MalformedRowError(f"{where}: field '{name}' is missing")
    return record[name]


def _text(record: Mapping[str, Any], name: str, where: str, allow_empty: bool = False) -> str:
    value = _field(record, name, where)
    if isinstance(value, bool | int | float):  # JSON parsed an answer such as "True" or "42" as a scalar
        value = str(value)
    if not isinstance(value, str):
        raise MalformedRowError(f"{where}: field '{name}' must be text, got {type(value).__name__}")
    if not allow_empty and not value.strip():
        raise MalformedRowError(f"{where}: field '{name}' is empty (expected an answer's text)")
    return value


def _label(record: Mapping[str, Any], name: str, allowed: Sequence[int], where: str) -> int:
    value = _field(record, name, where)
    try:
        label = int(str(value).strip()) if not isinstance(value, bool) else None
    except ValueError:
        label = None
    if label not in allowed:
        raise MalformedRowError(f"{where}: field '{name}' must be one of {list(allowed)}, got {value!r}")
    return label


def _pandalm_pair(record: Mapping[str, Any], where: str) -> dict[str, str] | str:
    """A PandaLM record -> the pair, or ``"tie"`` / ``"no_majority"`` when the votes do not pick an answer."""
    instruction = _text(record, "instruction", where)
    extra = _text(record, "input", where, allow_empty=True) if "input" in record else ""
    answers = {1: _text(record, "response1", where), 2: _text(record, "response2", where)}
    votes = [_label(record, f"annotator{i}", (0, 1, 2), where) for i in (1, 2, 3)]
    majority = next((v for v in (0, 1, 2) if votes.count(v) >= 2), None)
    if majority is None:
        return "no_majority"
    if majority == 0:
        return "tie"
    prompt = instruction.strip() + (f"\n\n{extra.strip()}" if extra.strip() else "")
    return {"prompt": prompt, "chosen": answers[majority], "rejected": answers[3 - majority]}


def _pairwise_pair(record: Mapping[str, Any], where: str) -> dict[str, str]:
    prompt = _text(record, "input", where)
    answers = {1: _text(record, "output_1", where), 2: _text(record, "output_2", where)}
    label = _label(record, "label", (1, 2), where)
    return {"prompt": prompt, "chosen": answers[label], "rejected": answers[3 - label]}


def convert_records(
    records: Iterable[Mapping[str, Any]], fmt: str, source: str, on_bad_row: str = "error"
) -> tuple[list[dict[str, str]], dict[str, int]]:
    """Records of ``fmt`` -> TRL preference rows (plain-text prompt/chosen/rejected), plus what was dropped.

    Returns:
        ``(rows, counts)``; ``counts`` has ``rows_read``, ``pairs``, ``ties`` and ``no_majority`` (PandaLM
        votes), and ``bad_rows`` (dropped with ``on_bad_row="drop"``).

    Raises:
        MalformedRowError: the first bad row, naming ``source``, the row index and the field (``on_bad_row="error"``).
    """
    if fmt not in FORMATS:
        raise ConfigError(f"{source}: dataset_format '{fmt}' is not one of {list(FORMATS)}")
    if on_bad_row not in BAD_ROW_POLICIES:
        raise ConfigError(f"bad_rows '{on_bad_row}' is not one of {list(BAD_ROW_POLICIES)}")
    convert = _pandalm_pair if fmt == "pandalm" else _pairwise_pair
    rows: list[dict[str, str]] = []
    counts = {"rows_read": 0, "pairs": 0, "ties": 0, "no_majority": 0, "bad_rows": 0}
    for i, record in enumerate(records):
        counts["rows_read"] += 1
        try:
            pair = convert(record, f"{source}: row {i}")
        except MalformedRowError:
            if on_bad_row == "error":
                raise
            counts["bad_rows"] += 1
            continue
        if isinstance(pair, str):
            counts["ties" if pair == "tie" else "no_majority"] += 1
            continue
        rows.append(pair)
    counts["pairs"] = len(rows)
    return rows, counts


# ----------------------------------------------------------------------------------------------
# splits that share no prompt and no answer


def _plain(value: Any) -> str:
    """Text of a string or a list of chat messages, whitespace-normalised (the identity used for grouping)."""
    if isinstance(value, list):
        value = "\n".join(str(m.get("content", "")) for m in value if isinstance(m, Mapping))
    return " ".join(str(value or "").split())


def row_texts(row: Mapping[str, Any]) -> tuple[str, list[str]]:
    """(prompt text, answer texts) of a row of any stage format; raw HH-RLHF dialogues are parsed first."""
    row = dict(row)
    if "prompt" not in row and is_hh_rlhf_text(row.get("chosen")):
        with contextlib.suppress(DatasetFormatError):
            row = hh_rlhf_to_preference(row)
    if "prompt" not in row and isinstance(row.get("chosen"), list) and isinstance(row.get("rejected"), list):
        row = split_implicit_prompt(row)
    if "prompt" not in row and isinstance(row.get("messages"), list):
        prompt = prompt_of_conversation(row["messages"])
        row = {"prompt": prompt, "completion": row["messages"][len(prompt) :]}
    answers = [_plain(row[c]) for c in ("chosen", "rejected", "completion") if row.get(c) is not None]
    return _plain(row.get("prompt")), [a for a in answers if a]


def group_rows(rows: Sequence[Mapping[str, Any]], max_group_rows: int | None = None) -> list[int]:
    """A group id per row: rows sharing a prompt always share a group; rows sharing an answer text do too,
    unless joining them would make a group of more than ``max_group_rows`` rows (a generic answer such as a
    refusal, found under many prompts, would otherwise glue everything into one group)."""
    parent = list(range(len(rows)))
    size = [1] * len(rows)

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def union(i: int, j: int, cap: int | None) -> None:
        a, b = find(i), find(j)
        if a != b and (cap is None or size[a] + size[b] <= cap):
            parent[b] = a
            size[a] += size[b]

    texts = [row_texts(row) for row in rows]
    first: dict[str, int] = {}
    for i, (prompt, _) in enumerate(texts):
        union(first.setdefault(prompt, i), i, None)
    first = {}
    for i, (_, answers) in enumerate(texts):
        for answer in answers:
            union(first.setdefault(answer, i), i, max_group_rows)
    roots: dict[int, int] = {}
    return [roots.setdefault(find(i), len(roots)) for i in range(len(rows))]


def split_by_group(
    rows: Sequence[Mapping[str, Any]], fractions: Mapping[str, float], seed: int = 0, train: str = "train"
) -> tuple[dict[str, list[int]], int]:
    """Row indices per split: ``fractions`` (``{"test": 0.2, "validation": 0.1}``) of the rows, by group.

    Groups (`group_rows`, at most half the smallest held-out split each) are ordered by a hash of the seed and
    their smallest prompt text; the held-out splits, in the order given, take groups until each holds at
    least its share of rows (rounded up), and ``train`` gets the rest. An answer text still found in two
    splits (a generic answer) stays only in the first of them: its rows in later splits are dropped.
    Each split's indices come back in the seeded order (shuffled, so a prefix is a fair subsample).

    Returns:
        ``({split: [row index, ...]}, rows dropped for a shared answer)``.
    """
    if any(not 0 < f < 1 for f in fractions.values()) or sum(fractions.values()) >= 1:
        raise ConfigError(f"held-out fractions {dict(fractions)} must each be in (0, 1) and sum below 1")
    targets = {name: math.ceil(f * len(rows)) for name, f in fractions.items()}
    groups = group_rows(rows, max(1, min(targets.values()) // 2))
    members: dict[int, list[int]] = {}
    for i, g in enumerate(groups):
        members.setdefault(g, []).append(i)

    def order(group: int) -> str:
        key = min(row_texts(rows[i])[0] for i in members[group])
        return hashlib.sha256(f"{seed}\x00{key}".encode()).hexdigest()

    queue = iter(sorted(members, key=order))
    out: dict[str, list[int]] = {name: [] for name in fractions}
    for name, target in targets.items():
        while len(out[name]) < target and (group := next(queue, None)) is not None:
            out[name].extend(members[group])
    out[train] = [i for group in queue for i in members[group]]
    seen: set[str] = set()
    dropped = 0
    for name, indices in out.items():  # held-out splits first, then train
        answers = {i: row_texts(rows[i])[1] for i in indices}
        kept = [i for i in indices if not seen.intersection(answers[i])]
        dropped += len(indices) - len(kept)
        out[name] = kept
        seen.update(a for i in kept for a in answers[i])
    return out, dropped


def split_overlap(splits: Mapping[str, Sequence[Mapping[str, Any]]]) -> dict[str, int]:
    """Prompts and answer texts found in more than one split (both 0 for a sound split)."""
    seen: dict[str, set[str]] = {"prompts": set(), "answers": set()}
    shared = {"prompts": 0, "answers": 0}
    for rows in splits.values():
        prompts, answers = set(), set()
        for row in rows:
            prompt, texts = row_texts(row)
            prompts.add(prompt)
            answers.update(texts)
        for kind, texts in (("prompts", prompts), ("answers", answers)):
            shared[kind] += len(texts & seen[kind])
            seen[kind] |= texts
    return shared


def write_split(output_dir: str | Path, data: Mapping[str, Any], manifest: Mapping[str, Any]) -> Path:
    """Write each split as ``output_dir/split/<name>.jsonl`` and ``output_dir/split.json`` (what, how, counts).

    The folder loads back as a dataset (``dataset_name: <output_dir>/split``), so a later stage or a rerun
    reads exactly these rows.
    """
    folder = Path(output_dir) / "split"
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for name, dataset in data.items():
        path = folder / f"{name}.jsonl"
        text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in dataset)
        path.write_text(text)
        files[name] = {
            "rows": len(dataset),
            "prompts": len({row_texts(row)[0] for row in dataset}),
            "sha256": hashlib.sha256(text.encode()).hexdigest(),
        }
    info = {**manifest, "files": files, "shared_across_splits": split_overlap(data)}
    path = Path(output_dir) / "split.json"
    path.write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
    return path


# ----------------------------------------------------------------------------------------------
# files -> datasets


def load_files(
    data_files: Mapping[str, str], dataset_format: str, on_bad_row: str, counts: dict[str, Any] | None
):
    """Local PandaLM / pairwise JSON(L) files (``{split: path}``) as a ``DatasetDict`` of preference rows;
    None when they are in another format (``dataset_format="auto"``) or ``dataset_format`` names another."""
    if dataset_format not in ("auto", *FORMATS):
        return None
    if any(Path(f).suffix.lower() not in (".json", ".jsonl") for f in data_files.values()):
        return None
    try:
        records = {split: (read_records(f), f) for split, f in data_files.items()}
    except MalformedRowError:
        if dataset_format != "auto":
            raise
        return None  # not a list of objects: left to the `datasets` JSON reader
    first = next((r[0] for r, _ in records.values() if r), None)
    fmt = (
        dataset_format if dataset_format != "auto" else (detect_format(first) if first is not None else None)
    )
    return to_dataset(records, fmt, on_bad_row, counts) if fmt else None


def to_dataset(records, fmt: str, on_bad_row: str, counts: dict[str, Any] | None):
    """``{split: (records, source)}`` of ``fmt`` -> ``DatasetDict`` of preference rows; counts per source."""
    from datasets import Dataset, DatasetDict

    out = {}
    for split, (rows, source) in records.items():
        converted, n = convert_records(rows, fmt, source, on_bad_row)
        if not converted:
            raise DatasetFormatError(f"{source}: no usable {fmt} pair ({n})")
        if n["ties"] or n["no_majority"] or n["bad_rows"]:
            logger.warning(
                "%s: %d pairs; dropped %d ties, %d without a majority, %d malformed rows",
                source, n["pairs"], n["ties"], n["no_majority"], n["bad_rows"],
            )  # fmt: skip
        if counts is not None:
            counts[source] = {"format": fmt, **n}
        out[split] = Dataset.from_list(converted)
    return DatasetDict(out)
