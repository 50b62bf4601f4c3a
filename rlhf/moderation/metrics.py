"""Moderation metrics as small pure functions over 0/1 labels, 0/1 predictions and scores.

No dependency beyond the standard library: ``evaluate.load("f1")`` needs the Hub, and these are a
few lines each. Conventions: a ratio whose denominator is zero is 0.0 (precision with no predicted
positives, recall with no positives, FPR with no negatives), except average precision with no
positives, which is undefined (``nan``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def confusion(y_true: Sequence[int], y_pred: Sequence[int]) -> tuple[int, int, int, int]:
    """(tp, fp, fn, tn) counts; labels and predictions are truthy/falsy values of equal length."""
    if len(y_true) != len(y_pred):
        raise ValueError(f"y_true has {len(y_true)} items but y_pred has {len(y_pred)}")
    tp = fp = fn = tn = 0
    for t, p in zip(y_true, y_pred, strict=True):
        if t and p:
            tp += 1
        elif p:
            fp += 1
        elif t:
            fn += 1
        else:
            tn += 1
    return tp, fp, fn, tn


def _ratio(num: float, den: float) -> float:
    return num / den if den else 0.0


def precision_recall_f1(y_true: Sequence[int], y_pred: Sequence[int]) -> tuple[float, float, float]:
    """Precision, recall and F1 of the positive class."""
    tp, fp, fn, _ = confusion(y_true, y_pred)
    precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
    return precision, recall, _ratio(2 * precision * recall, precision + recall)


def false_positive_rate(y_true: Sequence[int], y_pred: Sequence[int]) -> float:
    """Share of the negatives (safe items) predicted positive: the over-refusal rate."""
    _, fp, _, tn = confusion(y_true, y_pred)
    return _ratio(fp, fp + tn)


def average_precision(y_true: Sequence[int], scores: Sequence[float]) -> float:
    """Area under the precision-recall curve as the step sum ``sum_k (R_k - R_{k-1}) * P_k``.

    Thresholds are the distinct scores, highest first; tied scores enter together (no interpolation).
    Returns ``nan`` when there are no positives.
    """
    if len(y_true) != len(scores):
        raise ValueError(f"y_true has {len(y_true)} items but scores has {len(scores)}")
    positives = sum(1 for t in y_true if t)
    if positives == 0:
        return math.nan
    pairs = sorted(zip(scores, y_true, strict=True), key=lambda p: -p[0])
    ap, tp, seen, prev_recall, i = 0.0, 0, 0, 0.0, 0
    while i < len(pairs):
        j = i
        while j < len(pairs) and pairs[j][0] == pairs[i][0]:  # one threshold per distinct score
            tp += 1 if pairs[j][1] else 0
            j += 1
        seen = j
        recall = tp / positives
        ap += (recall - prev_recall) * (tp / seen)
        prev_recall, i = recall, j
    return ap


def precision_recall_curve(
    y_true: Sequence[int], scores: Sequence[float]
) -> list[tuple[float, float, float]]:
    """(threshold, precision, recall) at each distinct score, highest threshold first."""
    positives = sum(1 for t in y_true if t)
    pairs = sorted(zip(scores, y_true, strict=True), key=lambda p: -p[0])
    curve, tp, i = [], 0, 0
    while i < len(pairs):
        j = i
        while j < len(pairs) and pairs[j][0] == pairs[i][0]:
            tp += 1 if pairs[j][1] else 0
            j += 1
        curve.append((pairs[i][0], tp / j, _ratio(tp, positives)))
        i = j
    return curve


def threshold_for_fpr(y_true: Sequence[int], scores: Sequence[float], target_fpr: float) -> float:
    """A threshold ``t`` for the rule ``score >= t`` that flags at most ``target_fpr`` of the negatives and,
    among such thresholds, as many positives as any: on these items it flags what the lowest one flags.

    It lies midway between the highest negative score that must stay unflagged and the next score above it,
    not on the next score itself: a threshold placed on the lowest positive of a small tuning split keeps no
    margin, and new positives just below it are missed. With no negatives, or when every negative may be
    flagged, the lowest score is returned; with no score above the bound, a value just above it.
    """
    if not 0.0 <= target_fpr <= 1.0:
        raise ValueError(f"target_fpr must be in [0, 1], got {target_fpr}")
    if not scores:
        raise ValueError("no scores to choose a threshold from")
    negatives = sorted((s for s, t in zip(scores, y_true, strict=True) if not t), reverse=True)
    allowed = math.floor(target_fpr * len(negatives) + 1e-9)  # negatives that may be flagged
    if allowed >= len(negatives):
        return min(scores)
    bound = negatives[allowed]  # the highest negative that must stay below the threshold
    above = [s for s in scores if s > bound]
    return (bound + min(above)) / 2 if above else math.nextafter(bound, math.inf)


def binary_report(
    y_true: Sequence[int], y_pred: Sequence[int], scores: Sequence[float] | None = None
) -> dict:
    """precision, recall, f1, fpr, auprc (when scores are given), support and counts, as a flat dict."""
    tp, fp, fn, tn = confusion(y_true, y_pred)
    precision, recall, f1 = precision_recall_f1(y_true, y_pred)
    report = {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "fpr": false_positive_rate(y_true, y_pred),
        "support": tp + fn,
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": tn,
    }
    if scores is not None:
        report["auprc"] = average_precision(y_true, scores)
    return report


def multilabel_report(
    y_true: Sequence[Sequence[int]],
    y_pred: Sequence[Sequence[int]],
    scores: Sequence[Sequence[float]] | None,
    categories: Sequence[str],
) -> dict:
    """Per-category binary reports plus micro and macro averages over categories.

    Rows are items, columns follow ``categories``. ``macro_*`` averages the categories that have
    positives (AUPRC is undefined otherwise); ``micro_*`` pools every (item, category) decision.
    """
    per_category = {}
    for k, cid in enumerate(categories):
        col_true = [row[k] for row in y_true]
        col_pred = [row[k] for row in y_pred]
        col_scores = [row[k] for row in scores] if scores is not None else None
        per_category[cid] = binary_report(col_true, col_pred, col_scores)
    flat_true = [v for row in y_true for v in row]
    flat_pred = [v for row in y_pred for v in row]
    precision, recall, f1 = precision_recall_f1(flat_true, flat_pred)
    report = {
        "per_category": per_category,
        "micro_precision": precision,
        "micro_recall": recall,
        "micro_f1": f1,
    }
    present = [r for r in per_category.values() if r["support"] > 0]
    for key in ("precision", "recall", "f1", "auprc"):
        values = [r[key] for r in present if key in r]
        report[f"macro_{key}"] = sum(values) / len(values) if values else math.nan
    return report
