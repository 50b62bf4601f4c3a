"""Scores of answers: the gold judge's, a reward model's, and how well a reward model ranks answers.

    scores = gold_scores(builtin_judge(seed=0), prompts, answers)       # {"score": [...], "correct": [...]}
    rewards = reward_of_responses(reward_model, tokenizer, prompts, responses)
    tau = gold_rank_correlation(reward_model, tokenizer, answer_sets)   # mean Kendall tau-b against gold

A reward model reads a sequence at its last token: the end-of-turn token that closes the answer, as in its
training (:func:`rlhf.dataset_formats.conversation_ids`) and in PPO's rollouts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from rlhf.batching import batches_by_length, model_device, right_pad
from rlhf.dataset_formats import Messages, conversation_ids, prompt_ids
from rlhf.statistics import mean_rank_correlation


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
        for batch in batches_by_length([len(s) for s in sequences], batch_size):
            ids, mask = right_pad([sequences[i] for i in batch], pad_token_id)
            logits = reward_model(
                input_ids=ids.to(model_device(reward_model)),
                attention_mask=mask.to(model_device(reward_model)),
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
