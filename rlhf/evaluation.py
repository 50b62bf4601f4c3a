"""Evaluating a stage's model on held-out prompts: answers, gold-judge scores, reward scores, KL, tables.

The pieces are small functions so each stage composes the ones it needs:

    answers = generate_answers(model, tokenizer, prompts, max_new_tokens=48)      # batched, greedy
    scores = [judge.score(p, a) for p, a in zip(prompts, answers)]
    gain, low, high = bootstrap_ci(rl_scores, sft_scores)                         # paired, 95%
    kl = kl_to_reference(peft_policy, tokenizer, prompts)["kl"]                   # reference = adapter off

Prompts are chat messages (``[{"role": "user", "content": ...}]``) rendered with the tokenizer's chat
template and generation prompt, exactly as the RL trainers render them.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from collections.abc import Callable, Hashable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

logger = logging.getLogger(__name__)

Messages = list[dict[str, str]]


# ----------------------------------------------------------------------------------------------
# tokens


def _ids(encoded: Any) -> list[int]:
    """``apply_chat_template(tokenize=True)`` returns a list or a BatchEncoding depending on the version."""
    if hasattr(encoded, "keys"):
        encoded = encoded["input_ids"]
    return list(encoded)


def prompt_ids(tokenizer, prompt: Messages | str) -> list[int]:
    """Token ids of a prompt rendered for answering: chat template plus the assistant's generation prompt."""
    if isinstance(prompt, str):
        prompt = [{"role": "user", "content": prompt}]
    return _ids(tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True))


def conversation_ids(tokenizer, prompt: Messages, answer: Messages) -> list[int]:
    """Token ids of ``prompt + answer`` through the chat template, cut right after the answer's end-of-turn token.

    That is where a generated answer stops (generation ends at EOS), so a reward model trained on these ids
    is read at the same position in training, in PPO's rollouts and in evaluation.
    """
    ids = _ids(tokenizer.apply_chat_template(list(prompt) + list(answer), tokenize=True))
    eos = tokenizer.eos_token_id
    if eos is not None and eos in ids:
        ids = ids[: len(ids) - ids[::-1].index(eos)]
    return ids


def _left_pad(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, width - len(row) :] = torch.tensor(row, dtype=torch.long)
        mask[i, width - len(row) :] = 1
    return ids, mask


def _right_pad(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        mask[i, : len(row)] = 1
    return ids, mask


def _device(model) -> torch.device:
    return next(model.parameters()).device


def _batches_by_length(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of similar length (less padding); every index once."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


# ----------------------------------------------------------------------------------------------
# generation


@torch.no_grad()
def generate_responses(
    model,
    tokenizer,
    prompts: Sequence[Messages | str],
    *,
    max_new_tokens: int = 48,
    batch_size: int = 32,
    do_sample: bool = False,
    temperature: float = 1.0,
    seed: int | None = None,
) -> list[list[int]]:
    """Generated token ids per prompt (batched, left-padded), cut after the first EOS (kept).

    Greedy unless ``do_sample``; with sampling, ``seed`` makes the draw repeatable.
    """
    was_training = model.training
    model.eval()
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    pad = eos if pad is None else pad
    encoded = [prompt_ids(tokenizer, p) for p in prompts]
    responses: list[list[int]] = [[] for _ in prompts]
    generator_state = torch.random.get_rng_state()
    if seed is not None:
        torch.manual_seed(seed)
    sampling = {"temperature": temperature, "top_k": 0, "top_p": 1.0} if do_sample else {}
    try:
        for batch in _batches_by_length([len(e) for e in encoded], batch_size):
            ids, mask = _left_pad([encoded[i] for i in batch], pad)
            out = model.generate(
                input_ids=ids.to(_device(model)),
                attention_mask=mask.to(_device(model)),
                max_new_tokens=max_new_tokens,
                eos_token_id=eos,
                pad_token_id=pad,
                do_sample=do_sample,
                **sampling,
            )
            for row, i in zip(out[:, ids.shape[1] :].tolist(), batch, strict=True):
                responses[i] = row[: row.index(eos) + 1] if eos in row else [t for t in row if t != pad]
    finally:
        if seed is not None:
            torch.random.set_rng_state(generator_state)
        model.train(was_training)
    return responses


def decode_responses(tokenizer, responses: Sequence[Sequence[int]]) -> list[str]:
    """Answer texts of generated ids (special tokens dropped, whitespace stripped)."""
    return [t.strip() for t in tokenizer.batch_decode(responses, skip_special_tokens=True)]


def generate_answers(model, tokenizer, prompts: Sequence[Messages | str], **kwargs) -> list[str]:
    """Answer texts for ``prompts``; keyword arguments as `generate_responses` (greedy by default)."""
    return decode_responses(tokenizer, generate_responses(model, tokenizer, prompts, **kwargs))


# ----------------------------------------------------------------------------------------------
# scoring


def gold_scores(judge, prompts: Sequence[Messages | str], answers: Sequence[str]) -> dict[str, list]:
    """The gold judge's ``score`` and ``is_correct`` for each (prompt, answer)."""
    return {
        "score": [float(judge.score(p, a)) for p, a in zip(prompts, answers, strict=True)],
        "correct": [bool(judge.is_correct(p, a)) for p, a in zip(prompts, answers, strict=True)],
    }


def builtin_judge(seed: int = 0, task_kwargs: dict[str, Any] | None = None):
    """The built-in task's gold judge for the world of ``seed`` (the same world the data came from)."""
    from rlhf.task import GoldJudge, World

    return GoldJudge(World.generate(seed=seed, **dict(task_kwargs or {})))


@torch.no_grad()
def score_sequences(
    reward_model, sequences: Sequence[Sequence[int]], pad_token_id: int, batch_size: int = 32
) -> list[float]:
    """A sequence classifier's scalar score for each token sequence (read at its last token)."""
    was_training = reward_model.training
    reward_model.eval()
    scores: list[float] = [0.0] * len(sequences)
    try:
        for batch in _batches_by_length([len(s) for s in sequences], batch_size):
            ids, mask = _right_pad([sequences[i] for i in batch], pad_token_id)
            logits = reward_model(
                input_ids=ids.to(_device(reward_model)), attention_mask=mask.to(_device(reward_model))
            ).logits
            for value, i in zip(logits[:, 0].float().tolist(), batch, strict=True):
                scores[i] = value
    finally:
        reward_model.train(was_training)
    return scores


def reward_of_responses(
    reward_model,
    tokenizer,
    prompts: Sequence[Messages | str],
    responses: Sequence[Sequence[int]],
    batch_size: int = 32,
) -> list[float]:
    """Reward-model scores of generated responses, on the same ids PPO scores (prompt + response up to EOS)."""
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    sequences = [prompt_ids(tokenizer, p) + list(r) for p, r in zip(prompts, responses, strict=True)]
    return score_sequences(reward_model, sequences, pad, batch_size)


def gold_rank_correlation(
    reward_model, tokenizer, answer_sets: Sequence[dict], batch_size: int = 32
) -> float:
    """Mean Kendall tau-b between the reward model's scores and the gold scores of every answer of a prompt.

    ``answer_sets``: rows of ``{"prompt": messages, "answers": [text, ...], "gold": [score, ...]}`` (the built-in
    task's ``rlhf.task.builtin.answer_sets``). Answers are scored as in training: prompt + answer through the
    chat template, read at the end-of-turn token.
    """
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    sequences = [
        conversation_ids(tokenizer, row["prompt"], [{"role": "assistant", "content": answer}])
        for row in answer_sets
        for answer in row["answers"]
    ]
    flat = iter(score_sequences(reward_model, sequences, pad, batch_size))
    scores = [[next(flat) for _ in row["answers"]] for row in answer_sets]
    return mean_rank_correlation(scores, [row["gold"] for row in answer_sets])


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


# ----------------------------------------------------------------------------------------------
# KL to the reference policy


@torch.no_grad()
def sequence_logprobs(
    model,
    tokenizer,
    prompts: Sequence[Messages | str],
    responses: Sequence[Sequence[int]],
    batch_size: int = 32,
) -> list[float]:
    """Sum over response tokens of ``log p_model(token | prompt, earlier tokens)``, one number per response."""
    was_training = model.training
    model.eval()
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    rows = [(prompt_ids(tokenizer, p), list(r)) for p, r in zip(prompts, responses, strict=True)]
    totals = [0.0] * len(rows)
    try:
        for batch in _batches_by_length([len(p) + len(r) for p, r in rows], batch_size):
            seqs = [rows[i][0] + rows[i][1] for i in batch]
            ids, mask = _right_pad(seqs, pad)
            logits = model(
                input_ids=ids.to(_device(model)), attention_mask=mask.to(_device(model))
            ).logits.float()
            logprobs = torch.log_softmax(logits[:, :-1], dim=-1).gather(
                -1, ids[:, 1:, None].to(logits.device)
            )[..., 0]
            for j, i in enumerate(batch):
                start, end = len(rows[i][0]), len(rows[i][0]) + len(rows[i][1])
                totals[i] = float(logprobs[j, start - 1 : end - 1].sum())
    finally:
        model.train(was_training)
    return totals


def kl_to_reference(
    policy,
    tokenizer,
    prompts: Sequence[Messages | str],
    reference=None,
    *,
    max_new_tokens: int = 48,
    batch_size: int = 32,
    seed: int = 0,
    samples_per_prompt: int = 1,
) -> dict[str, Any]:
    """Monte-Carlo KL(policy || reference) over whole responses, on the policy's own samples.

    Responses are sampled from the policy at temperature 1; each one contributes
    ``log p_policy(response) - log p_reference(response)`` (the unbiased "k1" estimator), and the mean over
    samples estimates the KL in nats per response. ``reference=None`` with a PEFT policy means the policy with
    its adapter disabled (the SFT model under a LoRA RL run).

    Returns:
        ``{"kl": mean, "kl_per_sample": [...], "response_tokens": mean response length}``.
    """
    prompts = [p for p in prompts for _ in range(samples_per_prompt)]
    responses = generate_responses(
        policy,
        tokenizer,
        prompts,
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        do_sample=True,
        seed=seed,
    )
    logp_policy = sequence_logprobs(policy, tokenizer, prompts, responses, batch_size)
    with _reference_context(policy, reference) as ref:
        logp_reference = sequence_logprobs(ref, tokenizer, prompts, responses, batch_size)
    per_sample = [a - b for a, b in zip(logp_policy, logp_reference, strict=True)]
    return {
        "kl": float(np.mean(per_sample)) if per_sample else float("nan"),
        "kl_per_sample": per_sample,
        "response_tokens": float(np.mean([len(r) for r in responses])) if responses else 0.0,
    }


@contextlib.contextmanager
def _reference_context(policy, reference):
    if reference is not None:
        yield reference
        return
    if not hasattr(policy, "disable_adapter"):
        raise ValueError(
            "kl_to_reference needs a reference model, or a PEFT policy whose adapter can be disabled"
        )
    with policy.disable_adapter():
        yield policy


# ----------------------------------------------------------------------------------------------
# reporting


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


def mean(values: Sequence[float]) -> float:
    """Arithmetic mean (nan for no values)."""
    return float(np.mean(values)) if len(values) else float("nan")


Judge = Callable[[Messages | str, str], float]
