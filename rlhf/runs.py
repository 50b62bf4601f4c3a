"""A stage's output directory: guarding finished work, metrics, plots and the model card.

A run directory is *finished* once its ``metrics.json`` exists: every stage writes that file
last, so a crash or a kill leaves a directory that is not finished and can be resumed.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rlhf.config import ConfigError

logger = logging.getLogger(__name__)

METRICS_FILE = "metrics.json"


class RunDirError(ConfigError):
    """The output directory cannot be used without losing finished work."""


def is_complete(output_dir: str | os.PathLike) -> bool:
    """True when ``output_dir`` holds a finished run (its metrics.json was written)."""
    return (Path(output_dir) / METRICS_FILE).is_file()


def prepare_output_dir(output_dir: str | os.PathLike, overwrite: bool = False) -> Path:
    """Create ``output_dir``, refusing one that already holds a finished run unless ``overwrite``."""
    path = Path(output_dir)
    if is_complete(path) and not overwrite:
        raise RunDirError(
            f"output_dir '{path}' already holds a finished run ({path / METRICS_FILE}); "
            "choose another output_dir, or pass --overwrite_output_dir true to replace it"
        )
    path.mkdir(parents=True, exist_ok=True)
    return path


def read_metrics(output_dir: str | os.PathLike) -> dict[str, Any]:
    """The metrics a finished run wrote (empty if it has none)."""
    path = Path(output_dir) / METRICS_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def write_metrics(output_dir: str | os.PathLike, metrics: Mapping[str, Any]) -> Path:
    """Write ``metrics.json`` atomically; this marks the run finished."""
    path = Path(output_dir) / METRICS_FILE
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(_finite(metrics), indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)
    return path


def _finite(value: Any) -> Any:
    """JSON has no NaN/inf: write them as null rather than producing an unreadable file."""
    if isinstance(value, Mapping):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


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


def write_model_card(
    output_dir: str | os.PathLike,
    *,
    stage: str,
    description: str,
    base_model: str | None = None,
    datasets: Sequence[str] = (),
    metrics: Mapping[str, Any] | None = None,
    config: Mapping[str, Any] | None = None,
    library_name: str = "transformers",
    tags: Sequence[str] = (),
) -> Path:
    """Write a Hub-ready ``README.md`` with metadata (base model, datasets, tags, metrics)."""
    from huggingface_hub import ModelCard, ModelCardData

    metrics = dict(metrics or {})
    data = ModelCardData(
        base_model=base_model if base_model and not os.path.isdir(base_model) else None,
        datasets=list(datasets) or None,
        library_name=library_name,
        tags=["rlhf", stage, *tags],
        model_name=Path(output_dir).name,
    )
    card_metrics = {
        k: v for k, v in metrics.items() if isinstance(v, int | float) and not isinstance(v, bool)
    }
    if card_metrics:
        data.rlhf_metrics = card_metrics  # free-form metadata key, read back by ModelCard.load
    lines = [f"# {Path(output_dir).name}", "", description, ""]
    if base_model:
        lines += [f"Base model: `{base_model}`", ""]
    if card_metrics:
        lines += ["## Metrics", "", "| metric | value |", "| --- | --- |"]
        lines += [f"| {k} | {_fmt(v)} |" for k, v in sorted(card_metrics.items())]
        lines.append("")
    if config:
        import yaml

        lines += [
            "## Training configuration",
            "",
            "```yaml",
            yaml.safe_dump(dict(config), sort_keys=False).strip(),
        ]
        lines += ["```", ""]
    lines += [f"Trained with the `rlhf` recipe, stage `{stage}`.", ""]
    card = ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(lines))
    path = Path(output_dir) / "README.md"
    card.save(path)
    return path


def _fmt(value: float) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
