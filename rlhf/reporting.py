"""What a stage writes for people to read: markdown tables for the model card, JSONL samples, plots (curves and
histograms, PNG; skipped without matplotlib)."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rlhf.dataset_formats import Messages

logger = logging.getLogger(__name__)


def prompt_text(prompt: Messages | str) -> str:
    """The last user message of a prompt (what a table shows)."""
    if isinstance(prompt, str):
        return prompt
    users = [m["content"] for m in prompt if m.get("role") == "user"]
    return users[-1] if users else (prompt[-1]["content"] if prompt else "")


def markdown_table(rows: Sequence[dict[str, Any]], columns: Sequence[str], max_chars: int = 120) -> str:
    """A GitHub markdown table of ``rows`` (cells shortened to ``max_chars``, pipes and newlines escaped)."""

    def cell(value: Any) -> str:
        text = f"{value:.3g}" if isinstance(value, float) else str(value)
        text = text.replace("\n", " ").replace("|", "\\|")
        return text if len(text) <= max_chars else text[: max_chars - 1] + "…"

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row.get(c, "")) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def write_jsonl(path: str | os.PathLike, rows: Sequence[dict[str, Any]]) -> Path:
    """One JSON object per line."""
    import json

    path = Path(path)
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
    return path


def plot_histogram(
    path: str | os.PathLike, series: dict[str, Sequence[float]], title: str, xlabel: str, bins: int = 30
) -> Path | None:
    """Overlaid histograms of named series into a PNG; returns None without matplotlib."""
    try:  # a bare Figure: no pyplot state, and a notebook's backend is left alone
        from matplotlib.figure import Figure
    except ImportError:
        logger.warning("matplotlib is not installed (pip install 'rlhf[plots]'); skipping %s", path)
        return None
    values = [v for vs in series.values() for v in vs]
    if not values:
        return None
    edges = np.histogram_bin_edges(values, bins=bins)
    fig = Figure(figsize=(7, 4.2), dpi=110)
    ax = fig.subplots()
    for name, vs in series.items():
        ax.hist(vs, bins=edges, alpha=0.55, label=f"{name} (n={len(vs)})")
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("count")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    return path


def plot_curves(
    path: str | os.PathLike,
    curves: Mapping[str, Sequence[tuple[float, float]]],
    title: str,
    xlabel: str = "step",
    ylabel: str = "loss",
) -> Path | None:
    """Draw one line per named series of (x, y) points into a PNG; returns None without matplotlib."""
    try:  # a bare Figure: no pyplot state, and a notebook's backend is left alone
        from matplotlib.figure import Figure
    except ImportError:
        logger.warning("matplotlib is not installed (pip install 'rlhf[plots]'); skipping %s", path)
        return None
    fig = Figure(figsize=(7, 4.2), dpi=110)
    ax = fig.subplots()
    for name, points in curves.items():
        if points:
            xs, ys = zip(*points, strict=True)
            ax.plot(xs, ys, label=name, marker="o" if len(points) < 20 else None, markersize=3)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    if len(curves) > 1:
        ax.legend()
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    return path
