"""The project's metrics as local 🤗 `evaluate` modules, loadable offline by path:

    import evaluate
    from rlhf.metrics import metric_path

    accuracy = evaluate.load(metric_path("pairwise_accuracy"))
    accuracy.compute(chosen=[1.2, 0.3], rejected=[0.4, 0.9])        # {"pairwise_accuracy": 0.5}

Each module is a thin `evaluate.Metric` over the function the stages themselves call, so a number computed
in a notebook with `evaluate` is the number a stage writes to its metrics.json.

    pairwise_accuracy   chosen, rejected rewards            -> pairwise_accuracy
    rank_correlation    per-prompt model and gold scores   -> mean Kendall tau-b over prompts
    gold_judge          built-in prompts and answers       -> mean gold score, share correct
                        (config_name: the built-in task seed, e.g. "0")
"""

from __future__ import annotations

from pathlib import Path

METRICS = ("pairwise_accuracy", "rank_correlation", "gold_judge")


def metric_path(name: str) -> str:
    """The folder of the metric ``name`` (one of ``METRICS``), for ``evaluate.load``."""
    if name not in METRICS:
        raise ValueError(f"unknown metric '{name}'; expected one of {', '.join(METRICS)}")
    return str(Path(__file__).resolve().parent / name)
