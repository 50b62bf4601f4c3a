"""Reward-model data and evaluation beyond TRL: pairs that fit ``max_length``, held-out scores, baselines,
intervals by prompt, and the reward stage's plots.

    train, counts = fit_pairs(tokenize_pairs(data["train"], tokenizer), max_length=256)   # none dropped
    baselines = baseline_scores(base_lm, tokenizer, test)          # "longer wins", base model's log-probability
    acc, low, high = accuracy_by_prompt(chosen, rejected, groups)  # 95% bootstrap interval, prompts resampled

TRL's ``RewardTrainer`` drops every pair with a side longer than ``max_length``. Here a too-long conversation
loses tokens from its left instead (the start of the prompt first; the answer only when it alone is longer
than ``max_length``), so no pair is dropped and the reward is still read at the answer's last token. How many
pairs lost tokens is counted and reported.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from rlhf.batching import batches_by_length, model_device, right_pad
from rlhf.dataset_formats import conversation_ids, prompt_ids
from rlhf.reporting import markdown_table, plot_curves, plot_histogram, prompt_text, write_jsonl
from rlhf.scoring import gold_rank_correlation, score_sequences
from rlhf.statistics import pairwise_accuracy
from rlhf.task.builtin import answer_sets

logger = logging.getLogger(__name__)

BOOTSTRAP_RESAMPLES = 2000  # resamples of the held-out prompts; the interval's ends move < 0.005 beyond this


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def tokenize_pairs(dataset, tokenizer):
    """Add ``chosen_ids``/``rejected_ids`` (prompt + answer through the chat template, ending at end-of-turn)
    and ``chosen_start``/``rejected_start`` (where each answer's tokens begin)."""

    def encode(example):
        head = prompt_ids(tokenizer, example["prompt"])
        out = {}
        for side in ("chosen", "rejected"):
            ids = conversation_ids(tokenizer, example["prompt"], example[side])
            out[f"{side}_ids"], out[f"{side}_start"] = ids, _common_prefix(head, ids)
        return out

    return dataset.map(encode, desc="Tokenizing pairs")


def fit_pairs(dataset, max_length: int | None, split: str = "train") -> tuple[Any, dict[str, int]]:
    """Cut each side of each pair to its last ``max_length`` tokens, so TRL drops none; returns the counts.

    Returns:
        ``(dataset, counts)`` with ``{split}_pairs``, ``{split}_pairs_truncated`` (a side lost prompt tokens),
        ``{split}_answers_truncated`` (a side lost answer tokens too) and ``{split}_pairs_dropped`` (always 0).
    """
    counts = {f"{split}_pairs": len(dataset), f"{split}_pairs_truncated": 0, f"{split}_answers_truncated": 0}
    counts[f"{split}_pairs_dropped"] = 0
    if max_length is None:
        return dataset, counts
    truncated = answers = 0
    for c, r, cs, rs in zip(
        dataset["chosen_ids"], dataset["rejected_ids"], dataset["chosen_start"], dataset["rejected_start"],
        strict=True,
    ):  # fmt: skip
        truncated += len(c) > max_length or len(r) > max_length
        answers += len(c) - cs > max_length or len(r) - rs > max_length

    def cut(example):
        out = {}
        for side in ("chosen", "rejected"):
            ids, start = example[f"{side}_ids"], example[f"{side}_start"]
            drop = max(len(ids) - max_length, 0)
            out[f"{side}_ids"], out[f"{side}_start"] = ids[drop:], max(start - drop, 0)
        return out

    dataset = dataset.map(cut, desc=f"Fitting {split} pairs into {max_length} tokens")
    counts[f"{split}_pairs_truncated"], counts[f"{split}_answers_truncated"] = truncated, answers
    if truncated:
        logger.warning(
            "%s: %d of %d pairs longer than max_length=%d tokens lost tokens from the left of the prompt "
            "(%d also from an answer); none dropped",
            split, truncated, len(dataset), max_length, answers,
        )  # fmt: skip
    return dataset, counts


@torch.no_grad()
def mean_answer_logprobs(
    model, sequences: Sequence[Sequence[int]], starts: Sequence[int], pad_token_id: int, batch_size: int = 16
) -> list[float]:
    """Mean over answer tokens (from ``starts[i]`` on) of ``log p(token | everything before it)``."""
    was_training = model.training
    model.eval()
    out = [0.0] * len(sequences)
    try:
        for batch in batches_by_length([len(s) for s in sequences], batch_size):
            ids, mask = right_pad([sequences[i] for i in batch], pad_token_id)
            ids, mask = ids.to(model_device(model)), mask.to(model_device(model))
            logits = model(input_ids=ids, attention_mask=mask).logits.float()
            logprobs = torch.log_softmax(logits[:, :-1], -1).gather(-1, ids[:, 1:, None])[..., 0]
            for j, i in enumerate(batch):
                start = max(starts[i], 1)  # the first token has nothing to be predicted from
                out[i] = float(logprobs[j, start - 1 : len(sequences[i]) - 1].mean())
    finally:
        model.train(was_training)
    return out


def baseline_scores(base_model, tokenizer, pairs, batch_size: int = 16) -> dict[str, tuple[list, list]]:
    """Scores of two reward-free baselines on ``pairs`` (tokenized as by `tokenize_pairs`), chosen and rejected.

    - ``longer_answer``: the answer's length in characters (the longer answer wins);
    - ``base_logprob``: ``base_model``'s mean log-probability per answer token (None: skipped).
    """
    lengths = {side: [len(m[-1]["content"]) for m in pairs[side]] for side in ("chosen", "rejected")}
    out = {"longer_answer": (lengths["chosen"], lengths["rejected"])}
    if base_model is not None:
        pad = tokenizer.pad_token_id
        out["base_logprob"] = tuple(
            mean_answer_logprobs(base_model, pairs[f"{s}_ids"], pairs[f"{s}_start"], pad, batch_size)
            for s in ("chosen", "rejected")
        )
    return out


def pair_wins(chosen: Sequence[float], rejected: Sequence[float]) -> np.ndarray:
    """1 where chosen scores higher, 0.5 for a tie (a coin flip), 0 where rejected scores higher."""
    c, r = np.asarray(chosen, dtype=float), np.asarray(rejected, dtype=float)
    return (c > r) + 0.5 * (c == r)


def accuracy_by_prompt(
    chosen: Sequence[float],
    rejected: Sequence[float],
    groups: Sequence[Any],
    *,
    confidence: float = 0.95,
    n_resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Pairwise accuracy (ties count half) with a percentile bootstrap interval that resamples *prompts*.

    Pairs of one prompt are not independent, so the prompts (``groups``) are drawn with replacement and
    every pair of a drawn prompt counts. Returns ``(accuracy, low, high)``.
    """
    wins = pair_wins(chosen, rejected)
    if wins.size == 0:
        return float("nan"), float("nan"), float("nan")
    keys = {g: i for i, g in enumerate(dict.fromkeys(groups))}
    index = np.array([keys[g] for g in groups])
    sums, counts = np.bincount(index, wins), np.bincount(index)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(keys), size=(n_resamples, len(keys)))
    means = sums[draws].sum(1) / counts[draws].sum(1)
    alpha = (1 - confidence) / 2
    low, high = np.quantile(means, [alpha, 1 - alpha])
    return float(wins.mean()), float(low), float(high)


def compare_with_baselines(
    reward: tuple[Sequence[float], Sequence[float]],
    baselines: dict[str, tuple[Sequence[float], Sequence[float]]],
    groups: Sequence[Any],
    seed: int = 0,
) -> dict[str, Any]:
    """Accuracy of the reward model and each baseline with intervals by prompt, and the verdict.

    ``beats_baselines`` is true when the reward model's interval lies above 0.5 and above every baseline's
    accuracy; ``verdict`` says it in a sentence (printed, and in the model card).
    """
    acc, low, high = accuracy_by_prompt(*reward, groups, seed=seed)
    metrics: dict[str, Any] = {"accuracy_ci_low": low, "accuracy_ci_high": high}
    metrics["eval_prompts"] = len(set(groups))
    for name, (c, r) in baselines.items():
        b_acc, b_low, b_high = accuracy_by_prompt(c, r, groups, seed=seed)
        metrics.update({f"baseline_{name}_accuracy": b_acc, f"baseline_{name}_ci_low": b_low})
        metrics[f"baseline_{name}_ci_high"] = b_high
    best = max([0.5, *(metrics[f"baseline_{n}_accuracy"] for n in baselines)])
    metrics["beats_baselines"] = bool(math.isfinite(low) and low > best)
    names = ", ".join(f"{n} {metrics[f'baseline_{n}_accuracy']:.3f}" for n in baselines) or "none"
    if metrics["beats_baselines"]:
        verdict = f"The reward model beats chance and both baselines ({names}): its interval's low end is {low:.3f}."
    else:
        verdict = (
            f"The reward model does NOT beat chance and the baselines ({names}): accuracy {acc:.3f}, 95% interval "
            f"[{low:.3f}, {high:.3f}] by prompt; its low end is not above {best:.3f}, so it has not shown that it "
            "learnt more than these baselines."
        )
    metrics["verdict"] = verdict
    return metrics


def held_out_report(rows: Sequence[dict], pairs, tokenizer, script_args, model_args, seed: int = 0) -> dict:
    """The reward model's held-out accuracy with its interval by prompt, against the baselines on the same pairs.

    ``rows`` are the scored pairs (``reward_chosen``/``reward_rejected``) of the first ``len(rows)`` tokenized
    held-out ``pairs``. With ``script_args.eval_baselines`` the model the reward model started from
    (``model_args.model_name_or_path``) is loaded as a causal LM for the log-probability baseline.
    """
    from rlhf.models import load_causal_lm
    from rlhf.preferences import _plain

    pairs = pairs.select(range(len(rows)))
    groups = [_plain(p) for p in pairs["prompt"]]
    reward = ([r["reward_chosen"] for r in rows], [r["reward_rejected"] for r in rows])
    base = None
    if script_args.eval_baselines:
        try:  # after training: a model without a causal-LM form skips this baseline, it does not end the run
            base = load_causal_lm(
                model_args.model_name_or_path, gguf_file=script_args.gguf_file, dtype=model_args.dtype
            )
        except (OSError, ValueError) as err:
            logger.warning("no log-probability baseline: %s (%s)", model_args.model_name_or_path, err)
    batch = max(1, script_args.eval_score_batch_size // 4)  # a softmax over the vocabulary per token
    metrics = compare_with_baselines(reward, baseline_scores(base, tokenizer, pairs, batch), groups, seed)
    print(f"reward: {metrics['verdict']}")
    return metrics


def evaluate_pairs(model, tokenizer, test, script_args) -> tuple[list[dict], dict]:
    """Score held-out pairs (pairwise accuracy, mean margin) and, on the built-in task, the rank correlation with
    the gold judge over every answer style of each held-out question."""
    n = len(test) if script_args.eval_pairs is None else min(script_args.eval_pairs, len(test))
    test = test.select(range(n))
    pad = tokenizer.pad_token_id
    chosen = score_sequences(model, test["chosen_ids"], pad, script_args.eval_score_batch_size)
    rejected = score_sequences(model, test["rejected_ids"], pad, script_args.eval_score_batch_size)
    margins = [c - r for c, r in zip(chosen, rejected, strict=True)]
    metrics = {
        "pairwise_accuracy": pairwise_accuracy(chosen, rejected),
        "mean_margin": sum(margins) / max(len(margins), 1),
        # the Bradley-Terry loss the trainer minimises (without its centring term), on held-out pairs
        "eval_loss": sum(max(-m, 0.0) + math.log1p(math.exp(-abs(m))) for m in margins)
        / max(len(margins), 1),
        "mean_reward_chosen": sum(chosen) / max(n, 1),
        "mean_reward_rejected": sum(rejected) / max(n, 1),
        "eval_pairs": n,
    }
    rows = [
        {
            "prompt": prompt_text(p),
            "chosen": c[-1]["content"],
            "rejected": r[-1]["content"],
            "reward_chosen": rc,
            "reward_rejected": rr,
        }
        for p, c, r, rc, rr in zip(
            test["prompt"], test["chosen"], test["rejected"], chosen, rejected, strict=True
        )
    ]
    if script_args.dataset_name == "builtin":
        # every answer style of each held-out question, ranked by the model vs by the judge: unlike pairwise
        # accuracy this sees how the model orders answers the pairs never set against each other
        sets = answer_sets(script_args.dataset_test_split, script_args.task_seed, **script_args.task_kwargs())
        sets = sets[: script_args.eval_pairs]  # the same budget: one answer set per held-out pair at most
        metrics["gold_rank_correlation"] = gold_rank_correlation(
            model, tokenizer, sets, script_args.eval_score_batch_size
        )
        metrics["gold_answer_sets"] = len(sets)
    print(
        f"reward: pairwise accuracy {metrics['pairwise_accuracy']:.3f}, mean margin {metrics['mean_margin']:.3f} "
        f"on {n} held-out pairs"
        + (
            f", rank correlation with the gold judge {metrics['gold_rank_correlation']:.3f}"
            if "gold_rank_correlation" in metrics
            else ""
        )
    )
    return rows, metrics


def write_pair_outputs(output_dir, rows: list[dict], metrics: dict, log_history, card_samples: int) -> str:
    """The reward stage's plots (held-out reward histogram, loss) and ``pairs.jsonl``; returns the model card's
    table of the first ``card_samples`` held-out pairs."""
    from rlhf.stages import curves

    plot_histogram(
        output_dir / "rewards.png",
        {"chosen": [r["reward_chosen"] for r in rows], "rejected": [r["reward_rejected"] for r in rows]},
        title=f"reward on held-out pairs (pairwise accuracy {metrics['pairwise_accuracy']:.3f})",
        xlabel="reward (logit)",
    )
    plot_curves(
        output_dir / "loss.png",
        curves(log_history, {"loss": "train", "eval_loss": "held-out"}),
        title="reward model loss (-log sigmoid(r_chosen - r_rejected))",
        ylabel="loss",
    )
    write_jsonl(output_dir / "pairs.jsonl", rows)
    return markdown_table(
        rows[:card_samples], ["prompt", "chosen", "reward_chosen", "rejected", "reward_rejected"]
    )
