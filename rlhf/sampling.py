"""A policy's answers to prompts outside a trainer, their log-probabilities, and its KL to a reference policy.

    answers = generate_answers(model, tokenizer, prompts, max_new_tokens=48)      # batched, greedy
    kl = kl_to_reference(peft_policy, tokenizer, prompts)["kl"]                   # reference = adapter off

Prompts are chat messages (``[{"role": "user", "content": ...}]``) rendered with the tokenizer's chat
template and generation prompt, exactly as the RL trainers render them. The moderated pipeline's own
generation (requests, stop flags, finish reasons) is :mod:`rlhf.generation`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from rlhf.batching import batches_by_length, left_pad, model_device, right_pad
from rlhf.dataset_formats import Messages, prompt_ids

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
        for batch in batches_by_length([len(e) for e in encoded], batch_size):
            ids, mask = left_pad([encoded[i] for i in batch], pad)
            out = model.generate(
                input_ids=ids.to(model_device(model)),
                attention_mask=mask.to(model_device(model)),
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
        for batch in batches_by_length([len(p) + len(r) for p, r in rows], batch_size):
            seqs = [rows[i][0] + rows[i][1] for i in batch]
            ids, mask = right_pad(seqs, pad)
            logits = model(
                input_ids=ids.to(model_device(model)), attention_mask=mask.to(model_device(model))
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
