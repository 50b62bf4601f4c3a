"""Score a moderator on labelled examples: the shared core of `moderation-train` and `moderation-eval`."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rlhf.moderation.base import ModerationResult, Moderator
from rlhf.moderation.data import Examples
from rlhf.moderation.metrics import binary_report, multilabel_report, precision_recall_curve


def run_moderator(moderator: Moderator, examples: Examples, batch_size: int = 64) -> list[ModerationResult]:
    """Moderate every example on its own side, in batches; results come back in the examples' order."""
    items = examples.items()
    results: list[ModerationResult | None] = [None] * len(items)
    for side in ("input", "output"):
        indices = [i for i, s in enumerate(examples.sides) if s == side]
        for start in range(0, len(indices), batch_size):
            chunk = indices[start : start + batch_size]
            for i, result in zip(
                chunk, moderator.moderate([items[i] for i in chunk], side=side), strict=True
            ):
                results[i] = result
    return results  # type: ignore[return-value]


def result_scores(result: ModerationResult, categories: Sequence[str]) -> tuple[list[float], float]:
    """(per-category scores, overall "unsafe" score) of a result.

    The overall score is the highest category score of the stage that scored the item (the classifier's
    sigmoid outputs, so it does not depend on the thresholds and compares across runs). An item flagged by
    a stage that gives no scores (rules, or a cascade decided by its rules or guard) counts 1.0; a backend
    without scores counts 1.0 when flagged and 0.0 otherwise.
    """
    if result.scores is None:
        per = [float(result.categories.get(c, False)) for c in categories]
        return per, float(result.flagged)
    per = [float(result.scores.get(c, float(result.categories.get(c, False)))) for c in categories]
    overall = max(result.scores.values(), default=0.0)
    decided_by = (result.details or {}).get("decided_by", result.backend)
    if result.flagged and decided_by != "classifier":
        overall = 1.0
    return per, float(overall)


def score_examples(results: Sequence[ModerationResult], examples: Examples) -> dict[str, Any]:
    """Overall and per-category precision, recall, F1, AUPRC and FPR (over-refusal on safe items).

    Overall: an item is positive when labelled unsafe and predicted positive when flagged (any
    category); its score is its highest category score. Per category: the category's label against
    the result's decision for that category. Also the same overall figures per side.
    """
    categories = examples.categories
    per_scores, overall_scores = (
        zip(*(result_scores(r, categories) for r in results), strict=True) if results else ((), ())
    )
    flagged = [int(r.flagged) for r in results]
    overall = binary_report(examples.unsafe, flagged, list(overall_scores))
    preds = [[int(r.categories.get(c, False)) for c in categories] for r in results]
    multi = multilabel_report(examples.labels, preds, [list(s) for s in per_scores], categories)
    metrics: dict[str, Any] = {f"overall_{k}": v for k, v in overall.items()}
    metrics.update({k: v for k, v in multi.items() if k != "per_category"})
    metrics["per_category"] = multi["per_category"]
    for side in ("input", "output"):
        idx = [i for i, s in enumerate(examples.sides) if s == side]
        if idx:
            side_report = binary_report(
                [examples.unsafe[i] for i in idx], [flagged[i] for i in idx], [overall_scores[i] for i in idx]
            )
            metrics[f"{side}_f1"] = side_report["f1"]
            metrics[f"{side}_fpr"] = side_report["fpr"]
            metrics[f"{side}_recall"] = side_report["recall"]
    metrics["num_examples"] = len(results)
    metrics["num_unsafe"] = sum(examples.unsafe)
    latencies = [r.latency_s for r in results]
    metrics["mean_latency_s"] = sum(latencies) / len(latencies) if latencies else math.nan
    metrics["_curves"] = {
        "overall": precision_recall_curve(examples.unsafe, list(overall_scores)),
        **{
            c: precision_recall_curve([row[k] for row in examples.labels], [s[k] for s in per_scores])
            for k, c in enumerate(categories)
            if any(row[k] for row in examples.labels)
        },
    }
    return metrics


def group_table(
    results: Sequence[ModerationResult], examples: Examples, groups: Sequence[str]
) -> tuple[dict, str]:
    """Per group (a source, an XSTest type): rows, unsafe rows, share of unsafe rows flagged, share of safe
    rows passed, and overall AUPRC where the group has both classes. Returns (figures, printed table)."""
    figures: dict[str, dict[str, Any]] = {}
    overall = [result_scores(r, examples.categories)[1] for r in results]
    for group in dict.fromkeys(groups):
        idx = [i for i, g in enumerate(groups) if g == group]
        unsafe = [i for i in idx if examples.unsafe[i]]
        safe = [i for i in idx if not examples.unsafe[i]]
        row: dict[str, Any] = {
            "rows": len(idx),
            "unsafe": len(unsafe),
            "unsafe_flagged": sum(results[i].flagged for i in unsafe) / len(unsafe) if unsafe else math.nan,
            "safe_passed": sum(not results[i].flagged for i in safe) / len(safe) if safe else math.nan,
        }
        if unsafe and safe:
            row["auprc"] = binary_report(
                [examples.unsafe[i] for i in idx],
                [int(results[i].flagged) for i in idx],
                [overall[i] for i in idx],
            )["auprc"]
        figures[str(group)] = row
    lines = [("group", "rows", "unsafe", "unsafe flagged", "safe passed", "auprc")]
    fmt = lambda v: "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}"  # noqa: E731
    for group, row in figures.items():
        lines.append((group, str(row["rows"]), str(row["unsafe"]), fmt(row["unsafe_flagged"]),
                      fmt(row["safe_passed"]), fmt(row.get("auprc"))))  # fmt: skip
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    table = "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) for line in lines)
    return figures, table


def flat_metrics(metrics: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Metrics without the curves, with per-category figures flattened to ``<category>_<metric>``."""
    out = {f"{prefix}{k}": v for k, v in metrics.items() if k not in ("per_category", "_curves")}
    for cid, report in metrics.get("per_category", {}).items():
        for key in ("precision", "recall", "f1", "auprc", "fpr", "support"):
            if key in report:
                out[f"{prefix}{cid}_{key}"] = report[key]
    return out


def plot_pr_curves(path: str | Path, metrics: dict[str, Any], title: str) -> Path | None:
    """Precision-recall curves (overall and per category) into a PNG; None without matplotlib."""
    from rlhf.reporting import plot_curves

    curves = {name: [(r, p) for _, p, r in curve] for name, curve in metrics.get("_curves", {}).items()}
    return plot_curves(path, curves, title=title, xlabel="recall", ylabel="precision")


def format_table(metrics: dict[str, Any]) -> str:
    """A plain-text table: one row per category and one overall, with P, R, F1, AUPRC and FPR."""
    rows = [("category", "support", "precision", "recall", "f1", "auprc", "fpr")]
    fmt = lambda v: "nan" if isinstance(v, float) and math.isnan(v) else f"{v:.3f}"  # noqa: E731
    for cid, r in metrics.get("per_category", {}).items():
        rows.append(
            (
                cid,
                str(r["support"]),
                *(fmt(r.get(k, math.nan)) for k in ("precision", "recall", "f1", "auprc", "fpr")),
            )
        )
    rows.append(
        (
            "overall (unsafe)",
            str(metrics.get("overall_support", "")),
            *(
                fmt(metrics.get(f"overall_{k}", math.nan))
                for k in ("precision", "recall", "f1", "auprc", "fpr")
            ),
        )
    )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows)
