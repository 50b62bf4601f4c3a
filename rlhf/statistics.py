"""The numbers evaluations report, as pure functions of lists: means, accuracy, rank correlation, intervals.

gain, low, high = bootstrap_ci(rl_scores, sft_scores, groups=facts)   # paired, 95%, facts resampled
acc = pairwise_accuracy(chosen_scores, rejected_scores)
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence

import numpy as np


def mean(values: Sequence[float]) -> float:
    """Arithmetic mean (nan for no values)."""
    return float(np.mean(values)) if len(values) else float("nan")


def pairwise_accuracy(chosen: Sequence[float], rejected: Sequence[float]) -> float:
    """Share of pairs whose chosen score is strictly higher than the rejected one."""
    if not chosen:
        return float("nan")
    return float(np.mean(np.asarray(chosen) > np.asarray(rejected)))


def kendall_tau_b(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's rank correlation (tau-b, which corrects for ties) of two equally long score lists.

    1.0: the same order; -1.0: reversed; nan when either list has no two different values.
    """
    if len(x) != len(y):
        raise ValueError(f"rank correlation needs equal lengths, got {len(x)} and {len(y)}")
    concordant = discordant = ties_x = ties_y = 0
    for i in range(len(x)):
        for j in range(i + 1, len(x)):
            dx, dy = np.sign(x[i] - x[j]), np.sign(y[i] - y[j])
            if dx == 0 and dy == 0:
                continue
            if dx == 0:
                ties_x += 1
            elif dy == 0:
                ties_y += 1
            elif dx == dy:
                concordant += 1
            else:
                discordant += 1
    denominator = math.sqrt((concordant + discordant + ties_x) * (concordant + discordant + ties_y))
    return (concordant - discordant) / denominator if denominator else float("nan")


def mean_rank_correlation(scores: Sequence[Sequence[float]], gold: Sequence[Sequence[float]]) -> float:
    """Mean over prompts of Kendall's tau-b between a model's scores and the gold scores of that prompt's
    answers (prompts whose answers all tie are left out). Pairwise accuracy on the held-out pairs only asks
    whether the chosen answer wins; this also checks the order of answers that no pair compares."""
    taus = [kendall_tau_b(s, g) for s, g in zip(scores, gold, strict=True)]
    taus = [t for t in taus if not math.isnan(t)]
    return float(np.mean(taus)) if taus else float("nan")


def bootstrap_ci(
    values: Sequence[float],
    baseline: Sequence[float] | None = None,
    *,
    groups: Sequence[Hashable] | None = None,
    confidence: float = 0.95,
    n_resamples: int = 10_000,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Mean (of ``values - baseline`` when a paired baseline is given) with a percentile bootstrap interval.

    Args:
        values: per-item numbers (e.g. the RL policy's gold score on each held-out prompt).
        baseline: the same items' numbers under the baseline (e.g. the SFT policy on the same prompts);
            the pairs are resampled together, so the interval is for the mean paired difference.
        groups: a group key per item (e.g. the fact two prompts ask about). Items of one group are not
            independent, so whole groups are resampled (a cluster bootstrap) and the interval widens
            accordingly; None resamples items.
        confidence: coverage of the two-sided interval.
        n_resamples: bootstrap resamples.
        seed: seed of the resampling (the interval is a pure function of the inputs and the seed).

    Returns:
        ``(mean, low, high)``.
    """
    x = np.asarray(values, dtype=float)
    if baseline is not None:
        y = np.asarray(baseline, dtype=float)
        if x.shape != y.shape:
            raise ValueError(f"paired bootstrap needs equal lengths, got {len(x)} and {len(y)}")
        x = x - y
    if x.size == 0:
        return float("nan"), float("nan"), float("nan")
    if groups is None:
        sums, counts = x, np.ones_like(x)
    else:
        if len(groups) != x.size:
            raise ValueError(f"groups needs one key per value, got {len(groups)} for {x.size}")
        _, index = np.unique(np.asarray([str(g) for g in groups]), return_inverse=True)
        sums, counts = np.bincount(index, weights=x), np.bincount(index).astype(float)
    rng = np.random.default_rng(seed)
    means = np.empty(n_resamples)
    chunk = max(1, 2_000_000 // sums.size)  # bound the index matrix to ~16 MB
    for start in range(0, n_resamples, chunk):
        stop = min(start + chunk, n_resamples)
        picks = rng.integers(0, sums.size, size=(stop - start, sums.size))
        means[start:stop] = sums[picks].sum(axis=1) / counts[picks].sum(axis=1)
    alpha = (1 - confidence) / 2
    low, high = np.quantile(means, [alpha, 1 - alpha])
    return float(x.mean()), float(low), float(high)
