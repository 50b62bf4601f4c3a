"""The category taxonomy (ids, codes, names, descriptions) and label-set mappings onto it.

The default taxonomy ships as ``categories.yaml`` next to this module: the MLCommons hazard categories
plus Llama Guard 3's extras, and mapping tables from common label sets (OpenAI moderation, Llama Guard
codes, Jigsaw, BeaverTails) onto its ids.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

DEFAULT_TAXONOMY = Path(__file__).with_name("categories.yaml")

# The categories the built-in task labels (a subset of the MLCommons ids).
BUILTIN_CATEGORIES = (
    "violent_crimes",
    "nonviolent_crimes",
    "indiscriminate_weapons",
    "hate",
    "self_harm",
    "privacy",
)


@dataclass(frozen=True)
class Category:
    """One hazard category: a stable id, a short code for guard prompts, a name and a policy text."""

    id: str
    code: str
    name: str
    description: str


@lru_cache(maxsize=8)
def _read(path: str) -> dict[str, Any]:
    data = yaml.safe_load(Path(path).read_text()) or {}
    if not isinstance(data, dict) or not isinstance(data.get("categories"), list):
        raise ValueError(f"{path}: a taxonomy file needs a 'categories:' list")
    return data


def load_taxonomy(source: str | os.PathLike | None = None) -> dict[str, Category]:
    """The taxonomy as ``{id: Category}`` in file order; ``source`` is a YAML path (default: the built-in)."""
    path = str(source) if source not in (None, "default") else str(DEFAULT_TAXONOMY)
    categories = {}
    for i, entry in enumerate(_read(path)["categories"]):
        if "id" not in entry:
            raise ValueError(f"{path}: categories[{i}] has no 'id'")
        cid = str(entry["id"])
        categories[cid] = Category(
            id=cid,
            code=str(entry.get("code", f"S{i + 1}")),
            name=str(entry.get("name", cid)),
            description=str(entry.get("description", "")).strip(),
        )
    return categories


def select_categories(
    ids: Iterable[str] | None, taxonomy: Mapping[str, Category] | None = None
) -> dict[str, Category]:
    """The taxonomy restricted to ``ids`` (in that order); all of it when ``ids`` is None.

    Raises ValueError naming an id the taxonomy does not know.
    """
    taxonomy = taxonomy if taxonomy is not None else load_taxonomy()
    if ids is None:
        return dict(taxonomy)
    out = {}
    for cid in ids:
        if cid not in taxonomy:
            raise ValueError(f"unknown category id {cid!r}; known ids: {', '.join(taxonomy)}")
        out[cid] = taxonomy[cid]
    return out


def label_mapping(name_or_table: str | Mapping[str, Any], source: str | os.PathLike | None = None) -> dict:
    """A label-to-category table: a named table from the taxonomy file (e.g. "openai") or one given inline.

    Returns ``{label: [category ids]}`` (an empty list for labels mapped to null).
    """
    if isinstance(name_or_table, Mapping):
        table = name_or_table
    else:
        path = str(source) if source not in (None, "default") else str(DEFAULT_TAXONOMY)
        tables = _read(path).get("mappings") or {}
        if name_or_table not in tables:
            raise ValueError(f"unknown label mapping {name_or_table!r}; known: {', '.join(tables)}")
        table = tables[name_or_table]
    out = {}
    for label, target in table.items():
        if target is None:
            out[str(label)] = []
        elif isinstance(target, str):
            out[str(label)] = [target]
        else:
            out[str(label)] = [str(t) for t in target]
    return out
