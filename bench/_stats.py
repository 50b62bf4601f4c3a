"""Paired-round statistics shared by the benchmarks: ``ratio`` is the median of per-round ratios.

A round runs both sides once, back to back, and the side that goes first alternates from round to round, so
a neighbour that slows the machine for a minute slows both halves of the same round. The ratio of round i is
repo_i / plain_i; the benchmark reports the median of these with their interquartile range (``ratio_iqr``).
Rounds continue past ``min_rounds`` until the range is narrower than ``iqr_target`` or ``max_rounds`` is reached,
and stop only after an even number of rounds, so that each side went first equally often: on an idle 2-core
machine the side that goes first ran ~3% slower (reward bench, 15 rounds: ratio 0.968 in repo-first rounds,
0.997 in plain-first ones), and five rounds, three of them repo-first, leaned the median by that much.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from typing import Any


def paired_ratio(repo: Sequence[float], plain: Sequence[float]) -> dict[str, Any]:
    """Median and interquartile range of ``repo[i] / plain[i]`` (rates: higher is better on both sides).

    Returns ``{"ratio", "ratio_iqr", "ratio_q1", "ratio_q3", "ratio_rounds"}``; with one round the range is 0.
    """
    if len(repo) != len(plain) or not repo:
        raise ValueError(f"paired rounds need equal, non-zero counts; got {len(repo)} and {len(plain)}")
    ratios = [r / p for r, p in zip(repo, plain, strict=True)]
    if len(ratios) == 1:
        q1 = q3 = ratios[0]
    else:
        q1, _, q3 = statistics.quantiles(ratios, n=4, method="inclusive")
    return {
        "ratio": round(statistics.median(ratios), 4),
        "ratio_iqr": round(q3 - q1, 4),
        "ratio_q1": round(q1, 4),
        "ratio_q3": round(q3, 4),
        "ratio_rounds": [round(x, 4) for x in ratios],
    }


def paired_rounds(
    run_repo: Callable[[int], Any],
    run_plain: Callable[[int], Any],
    rate: Callable[[Any], float],
    min_rounds: int = 6,
    max_rounds: int = 16,
    iqr_target: float = 0.05,
    log: Callable[[int, Any, Any], None] | None = None,
) -> tuple[list[Any], list[Any]]:
    """Run rounds of both sides, alternating which goes first, until the ratio's IQR < ``iqr_target``.

    ``run_repo(i)`` / ``run_plain(i)`` do round i's work and return a result; ``rate(result)`` is its figure
    (higher is better). At least ``min_rounds`` and at most ``max_rounds`` rounds run; short of ``max_rounds`` they
    stop after an even count. ``log(i, repo, plain)``
    is called after each round. Returns the two lists of results, in round order.
    """
    if min_rounds < 1 or max_rounds < min_rounds:
        raise ValueError(f"need 1 <= min_rounds <= max_rounds; got {min_rounds} and {max_rounds}")
    repo: list[Any] = []
    plain: list[Any] = []
    for i in range(max_rounds):
        if i % 2 == 0:
            repo.append(run_repo(i))
            plain.append(run_plain(i))
        else:
            plain.append(run_plain(i))
            repo.append(run_repo(i))
        if log is not None:
            log(i, repo[-1], plain[-1])
        done = i + 1 >= min_rounds and (i + 1) % 2 == 0  # both orders equally often
        if done and paired_ratio([rate(r) for r in repo], [rate(p) for p in plain])["ratio_iqr"] < iqr_target:
            break
    return repo, plain


def describe(figures: dict[str, Any]) -> str:
    """One line for the console: the median paired ratio, its IQR and the number of rounds."""
    return (
        f"ratio repo / plain: {figures['ratio']:.3f} (median of {len(figures['ratio_rounds'])} paired rounds; "
        f"IQR {figures['ratio_iqr']:.3f}, quartiles {figures['ratio_q1']:.3f}..{figures['ratio_q3']:.3f})"
    )
