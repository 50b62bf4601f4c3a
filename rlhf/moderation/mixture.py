"""A moderation data set mixed from several labelled sources, split train / validation / test by text.

The mixture is described in config (``dataset_mixture:`` of `rlhf moderation-train`)::

    dataset_mixture:
      data_root: ../shared/data     # relative paths below start here; $RLHF_SHARED_DATA overrides it
      seed: 0                       # same seed, same split
      split: {train: 0.7, validation: 0.15, test: 0.15}
      sources:
        - name: davidson
          path: davidson-hate-offensive/labeled_data.csv
          text_column: tweet
          label_column: class            # one label per row ...
          labels: {"0": hate, "1": drop, "2": safe}   # ... mapped to category id(s), safe, unsafe or drop
          max_rows_per_label: 700        # seeded sample per source label (null: all)
        - name: builtin                  # the built-in task's moderation data (both splits, pooled)
          path: builtin

A label maps to a category id or a list of ids (an unsafe row in those categories), ``safe`` (a safe row),
``unsafe`` (unsafe without a category) or ``drop`` (row left out); a source without ``label_column`` gives
every row the label ``default``. Rows are deduplicated on their normalised text across all sources, and
each distinct text goes to one split by a seeded hash, so no text is shared between splits.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import random
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rlhf.moderation.data import SHARED_DATA, DatasetError, shared_data_path

SPLITS = ("train", "validation", "test")
SPECIAL = ("safe", "unsafe", "drop")
SOURCE_KEYS = {"name", "path", "text_column", "label_column", "labels", "default", "max_rows_per_label",
               "max_rows"}  # fmt: skip


def data_root(spec: Mapping[str, Any]) -> Path:
    """Where relative source paths start: the spec's ``data_root`` (default ``../shared/data``, relative to
    the working directory; ``$RLHF_SHARED_DATA`` replaces that default folder)."""
    return shared_data_path(str(spec.get("data_root") or SHARED_DATA))


def _read_rows(path: Path) -> list[dict[str, Any]]:
    suffix = path.suffix.lower()
    if suffix == ".csv":
        with path.open(newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))
    if suffix == ".jsonl":
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if suffix == ".json":
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, list):
            raise DatasetError(f"{path}: expected a JSON list of rows")
        return data
    raise DatasetError(f"{path}: unsupported file type; use .csv, .jsonl or .json")


def _targets(value: Any, where: str) -> list[str] | str:
    if value in SPECIAL:
        return value
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return list(value)
    raise DatasetError(
        f"{where}: expected a category id, a list of ids, or one of {list(SPECIAL)}; got {value!r}"
    )


def load_source(source: Mapping[str, Any], root: Path, where: str) -> list[dict[str, Any]]:
    """One source's rows as ``{text, side, prompt, unsafe, categories, source, source_label}``."""
    unknown = set(source) - SOURCE_KEYS
    if unknown:
        raise DatasetError(f"{where}: unknown key(s) {sorted(unknown)}; expected {sorted(SOURCE_KEYS)}")
    name = str(source.get("name") or source.get("path"))
    if not source.get("path"):
        raise DatasetError(f"{where}: key 'path' (a file under data_root, or 'builtin') is required")
    if source["path"] == "builtin":
        from rlhf.task import load_builtin

        data = load_builtin("moderation", seed=int(source.get("seed", 0)))
        rows = [
            {**row, "source": name, "source_label": ",".join(row["categories"]) or "safe"}
            for split in data.values()
            for row in split
        ]
        return _cap(rows, source, name)
    path = Path(source["path"]).expanduser()
    path = path if path.is_absolute() else root / path
    if not path.is_file():
        raise DatasetError(
            f"{where}: path '{path}' not found (set data_root or $RLHF_SHARED_DATA to the data folder)"
        )
    raw = _read_rows(path)
    text_column = source.get("text_column", "text")
    label_column = source.get("label_column")
    if raw and text_column not in raw[0]:
        raise DatasetError(
            f"{where}: text_column '{text_column}' not in {path.name}; columns are {sorted(raw[0])}"
        )
    if raw and label_column and label_column not in raw[0]:
        raise DatasetError(
            f"{where}: label_column '{label_column}' not in {path.name}; columns are {sorted(raw[0])}"
        )
    table = {str(k): _targets(v, f"{where}.labels.{k}") for k, v in (source.get("labels") or {}).items()}
    default = _targets(source.get("default", "safe"), f"{where}.default")
    rows = []
    for record in raw:
        text = str(record.get(text_column) or "").strip()
        if not text:
            continue
        label = str(record[label_column]) if label_column else "default"
        if label_column and label not in table:
            raise DatasetError(
                f"{where}: label {label!r} of column '{label_column}' has no entry in 'labels'"
            )
        target = table[label] if label_column else default
        if target == "drop":
            continue
        categories = [] if isinstance(target, str) else target
        rows.append(
            {
                "text": text,
                "side": "input",
                "prompt": "",
                "unsafe": int(target != "safe"),
                "categories": categories,
                "source": name,
                "source_label": label,
            }
        )
    return _cap(rows, source, name)


def _cap(rows: list[dict[str, Any]], source: Mapping[str, Any], name: str) -> list[dict[str, Any]]:
    """A seeded sample of at most ``max_rows_per_label`` rows per source label and ``max_rows`` in all."""
    rng = random.Random(f"{name}:cap")
    per_label = source.get("max_rows_per_label")
    if per_label is not None:
        by_label: dict[str, list[int]] = {}
        for i, row in enumerate(rows):
            by_label.setdefault(row["source_label"], []).append(i)
        keep = sorted(i for idx in by_label.values() for i in rng.sample(idx, min(len(idx), int(per_label))))
        rows = [rows[i] for i in keep]
    if source.get("max_rows") is not None and len(rows) > int(source["max_rows"]):
        keep = sorted(rng.sample(range(len(rows)), int(source["max_rows"])))
        rows = [rows[i] for i in keep]
    return rows


def text_key(text: str) -> str:
    """What makes two texts "the same" for splitting: case and runs of whitespace folded."""
    return re.sub(r"\s+", " ", text.strip().lower())


def split_of(text: str, seed: int, fractions: Mapping[str, float]) -> str:
    """The split a text belongs to: a seeded hash of its folded text, cut by the split fractions."""
    digest = hashlib.sha256(f"{seed}\0{text_key(text)}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    edge = 0.0
    for name in SPLITS:
        edge += float(fractions.get(name, 0.0))
        if u < edge:
            return name
    return SPLITS[-1]


def build_mixture(spec: Mapping[str, Any], where: str = "dataset_mixture") -> dict[str, list[dict[str, Any]]]:
    """``{train|validation|test: rows}`` of the mixture (module docstring); rows keep their ``source``."""
    if not isinstance(spec, Mapping) or not spec.get("sources"):
        raise DatasetError(f"{where}: expected a mapping with a 'sources:' list")
    unknown = set(spec) - {"data_root", "seed", "split", "sources"}
    if unknown:
        raise DatasetError(
            f"{where}: unknown key(s) {sorted(unknown)}; expected data_root, seed, split, sources"
        )
    fractions = dict(spec.get("split") or {"train": 0.7, "validation": 0.15, "test": 0.15})
    if set(fractions) - set(SPLITS) or abs(sum(fractions.values()) - 1.0) > 1e-6:
        raise DatasetError(
            f"{where}.split: expected fractions of {list(SPLITS)} summing to 1, got {fractions}"
        )
    seed = int(spec.get("seed", 0))
    root = data_root(spec)
    out: dict[str, list[dict[str, Any]]] = {name: [] for name in SPLITS}
    seen: set[str] = set()
    for i, source in enumerate(spec["sources"]):
        for row in load_source(source, root, f"{where}.sources[{i}]"):
            key = text_key(row["text"]) + "\0" + text_key(row["prompt"])
            if key in seen:  # the same text twice (within or across sources): keep the first
                continue
            seen.add(key)
            out[split_of(row["text"], seed, fractions)].append(row)
    return out


def write_mixture(splits: Mapping[str, list[dict[str, Any]]], folder: str | os.PathLike) -> Path:
    """Write ``<folder>/<split>.jsonl`` (what ``dataset_name: <folder>`` reads back); returns the folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name, rows in splits.items():
        with (folder / f"{name}.jsonl").open("w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return folder
