"""Moderation metrics: exact values on constructed inputs."""

import math

import pytest

from rlhf.moderation.metrics import (
    average_precision,
    binary_report,
    confusion,
    false_positive_rate,
    multilabel_report,
    precision_recall_curve,
    precision_recall_f1,
    threshold_for_fpr,
)


@pytest.mark.parametrize(
    ("y_true", "y_pred", "expected"),
    [
        # tp=2 fp=1 fn=1 -> P=2/3 R=2/3 F1=2/3
        ([1, 1, 1, 0, 0], [1, 1, 0, 1, 0], (2 / 3, 2 / 3, 2 / 3)),
        # tp=1 fp=0 fn=2 -> P=1 R=1/3 F1=0.5
        ([1, 1, 1, 0], [1, 0, 0, 0], (1.0, 1 / 3, 0.5)),
        ([0, 0], [0, 0], (0.0, 0.0, 0.0)),  # nothing to find, nothing predicted
        ([1, 0], [0, 1], (0.0, 0.0, 0.0)),
        ([1, 1], [1, 1], (1.0, 1.0, 1.0)),
    ],
)
def test_precision_recall_f1(y_true, y_pred, expected):
    assert precision_recall_f1(y_true, y_pred) == pytest.approx(expected)


def test_confusion_and_fpr():
    y_true, y_pred = [1, 0, 0, 0, 1], [1, 1, 0, 0, 0]
    assert confusion(y_true, y_pred) == (1, 1, 1, 2)
    assert false_positive_rate(y_true, y_pred) == pytest.approx(1 / 3)  # 1 of 3 safe items flagged
    assert false_positive_rate([1, 1], [1, 0]) == 0.0  # no safe items
    with pytest.raises(ValueError):
        confusion([1], [1, 0])


@pytest.mark.parametrize(
    ("y_true", "scores", "expected"),
    [
        ([1, 0, 1, 0], [0.9, 0.8, 0.7, 0.1], (1 / 2) * 1 + (1 / 2) * (2 / 3)),  # 0.8333
        ([1, 1, 0, 0], [0.9, 0.8, 0.3, 0.1], 1.0),  # perfect ranking
        ([0, 0, 1, 1], [0.9, 0.8, 0.3, 0.1], (1 / 2) * (1 / 3) + (1 / 2) * (2 / 4)),  # worst ranking
        # ties enter together: threshold 0.5 takes both items at once -> P=1/2 at R=1
        ([1, 0], [0.5, 0.5], 0.5),
        ([1, 0, 1], [0.9, 0.5, 0.5], 0.5 * 1 + 0.5 * (2 / 3)),
    ],
)
def test_average_precision(y_true, scores, expected):
    assert average_precision(y_true, scores) == pytest.approx(expected)


def test_average_precision_without_positives_is_nan():
    assert math.isnan(average_precision([0, 0], [0.1, 0.9]))


def test_precision_recall_curve():
    curve = precision_recall_curve([1, 0, 1, 0], [0.9, 0.8, 0.7, 0.1])
    assert curve == [(0.9, 1.0, 0.5), (0.8, 0.5, 0.5), (0.7, pytest.approx(2 / 3), 1.0), (0.1, 0.5, 1.0)]


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        (0.0, 0.825),  # no safe item flagged: midway between the top safe score (0.8) and the next (0.85)
        (
            0.25,
            0.65,
        ),  # one of four safe items (0.8) may be flagged: midway between 0.6 and the positive at 0.7
        (0.5, 0.45),
        (1.0, 0.1),  # every safe item may be flagged: the lowest score
    ],
)
def test_threshold_for_fpr(target, expected):
    y_true = [1, 1, 0, 0, 0, 0, 1]
    scores = [0.9, 0.85, 0.8, 0.6, 0.3, 0.1, 0.7]
    t = threshold_for_fpr(y_true, scores, target)
    assert t == pytest.approx(expected)
    flagged_safe = sum(1 for s, y in zip(scores, y_true, strict=True) if not y and s >= t)
    assert flagged_safe / 4 <= target
    # it flags what the lowest threshold meeting the target flags: no positive is given away for the margin
    lowest = min(
        c
        for c in scores
        if sum(1 for s, y in zip(scores, y_true, strict=True) if not y and s >= c) / 4 <= target
    )
    assert [s >= t for s in scores] == [s >= lowest for s in scores]


def test_threshold_keeps_a_margin_above_the_safe_scores():
    # one safe item at 0.05, positives at 0.98 and 0.99: a new positive at 0.9 is still caught
    t = threshold_for_fpr([0, 1, 1], [0.05, 0.98, 0.99], 0.0)
    assert t == pytest.approx(0.515) and 0.05 < t < 0.9


def test_threshold_above_every_score_when_target_cannot_be_met():
    t = threshold_for_fpr([0, 1], [0.9, 0.2], 0.0)
    assert t > 0.9 and t < 0.9 + 1e-9


def test_binary_and_multilabel_reports():
    report = binary_report([1, 0, 1, 0], [1, 1, 0, 0], [0.9, 0.8, 0.7, 0.1])
    assert report["precision"] == 0.5 and report["recall"] == 0.5 and report["fpr"] == 0.5
    assert report["auprc"] == pytest.approx(5 / 6) and report["support"] == 2
    multi = multilabel_report(
        y_true=[[1, 0], [0, 0], [0, 1], [1, 0]],
        y_pred=[[1, 0], [1, 0], [0, 0], [1, 0]],
        scores=[[0.9, 0.1], [0.6, 0.2], [0.4, 0.3], [0.8, 0.1]],
        categories=["hate", "privacy"],
    )
    assert multi["per_category"]["hate"]["f1"] == pytest.approx(0.8)  # P=2/3 R=1
    assert multi["per_category"]["privacy"]["recall"] == 0.0
    assert multi["per_category"]["privacy"]["auprc"] == pytest.approx(
        1.0
    )  # ranked first, though under threshold
    assert multi["micro_precision"] == pytest.approx(2 / 3) and multi["micro_recall"] == pytest.approx(2 / 3)
    assert multi["macro_f1"] == pytest.approx(0.4)
