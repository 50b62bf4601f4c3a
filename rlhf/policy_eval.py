"""A trained policy against the SFT policy it started from, on the same held-out prompts: what the RL and DPO
stages report.

    samples, metrics = compare_policies(policy, None, tokenizer, test, args, seed=0, max_new_tokens=32)

Both policies answer the same prompts (greedy, or sampled with the same seed). With the built-in task the gold
judge scores every answer, and the gain gets a 95% bootstrap interval that resamples whole facts (prompts asking
about one fact move together); with a reward model, its scores and their gain too. The KL of the policy to the
SFT policy is estimated on the policy's own samples. With LoRA the SFT policy is the same network with the
adapter off (``reference=None``).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

from rlhf.reporting import markdown_table, prompt_text, write_jsonl
from rlhf.sampling import decode_responses, generate_responses, kl_to_reference
from rlhf.scoring import builtin_judge, gold_scores, reward_of_responses
from rlhf.statistics import bootstrap_ci, mean


@dataclass
class PolicyEvalArguments:
    """
    How a stage that trains a policy compares it with the SFT policy after training.

    Args:
        eval_prompts (`int`, *optional*, defaults to `200`):
            Held-out prompts answered by the SFT and the trained policy after training (0: skip the comparison).
        eval_max_new_tokens (`int` or `None`, *optional*, defaults to `None`):
            Longest answer in that evaluation (`None`: the RL algorithm's response length; 48 tokens for DPO).
        eval_generation_batch_size (`int`, *optional*, defaults to `64`):
            Prompts per `generate` call in that evaluation.
        eval_do_sample (`bool`, *optional*, defaults to `False`):
            Sample the evaluation answers (at `eval_temperature`, same seed for both policies) instead of
            decoding greedily. RL optimises the reward of *sampled* answers; greedy decoding hides the flawed
            answers a policy still gives some of the time.
        eval_temperature (`float`, *optional*, defaults to `1.0`):
            Sampling temperature of that evaluation.
        kl_samples_per_prompt (`int`, *optional*, defaults to `1`):
            Sampled answers per held-out prompt for the KL estimate.
        bootstrap_resamples (`int`, *optional*, defaults to `10000`):
            Resamples of the paired bootstrap interval of the gain.
    """

    eval_prompts: int = field(
        default=200, metadata={"help": "Held-out prompts for the before/after evaluation (0: skip)."}
    )
    eval_max_new_tokens: int | None = field(
        default=None, metadata={"help": "Longest evaluation answer (None: the stage's response length)."}
    )
    eval_generation_batch_size: int = field(default=64, metadata={"help": "Prompts per generate call."})
    eval_do_sample: bool = field(default=False, metadata={"help": "Sample evaluation answers (else greedy)."})
    eval_temperature: float = field(default=1.0, metadata={"help": "Evaluation sampling temperature."})
    kl_samples_per_prompt: int = field(default=1, metadata={"help": "Sampled answers per prompt for the KL."})
    bootstrap_resamples: int = field(
        default=10_000, metadata={"help": "Resamples of the bootstrap interval."}
    )


def sft_reference(policy, model_name_or_path: str, dtype=None):
    """The SFT policy to compare with: None for a PEFT policy (its adapter is switched off), else a fresh load."""
    from rlhf.models import load_causal_lm

    if hasattr(policy, "disable_adapter"):
        return None
    return load_causal_lm(model_name_or_path, dtype=dtype)


def unique_prompts(dataset):
    """The rows of ``dataset`` with a prompt not seen in an earlier row (preference data can hold several pairs
    per prompt; each prompt is answered once)."""
    first: dict[str, int] = {}
    for i, prompt in enumerate(dataset["prompt"]):
        first.setdefault(json.dumps(prompt, sort_keys=True), i)
    return dataset.select(sorted(first.values()))


def _responses(
    model, tokenizer, prompts, args: PolicyEvalArguments, max_new_tokens: int, seed: int, adapter=True
):
    kwargs = dict(
        max_new_tokens=max_new_tokens,
        batch_size=args.eval_generation_batch_size,
        do_sample=args.eval_do_sample,
        temperature=args.eval_temperature,
        seed=seed,
    )
    if adapter or not hasattr(model, "disable_adapter"):
        return generate_responses(model, tokenizer, prompts, **kwargs)
    with model.disable_adapter():
        return generate_responses(model, tokenizer, prompts, **kwargs)


def compare_policies(
    policy,
    reference,
    tokenizer,
    test,
    args: PolicyEvalArguments,
    *,
    seed: int,
    max_new_tokens: int,
    reward_model=None,
    name: str = "rl",
) -> tuple[list[dict], dict]:
    """Answers of the SFT policy (``reference``, or ``policy`` with its adapter off when None) and of ``policy``
    to the first ``args.eval_prompts`` prompts of ``test``, scored; the KL of the policy to the SFT policy.

    ``args`` also carries the dataset fields (`rlhf.datasets.DatasetArguments`): on the built-in task the gold
    judge scores the answers. ``name`` labels the policy's columns in the samples (``sft`` vs ``name``).

    Returns:
        ``(samples, metrics)``: one dict per prompt; ``gold_reward_*`` (sft, policy, gain with ``_ci_low``/
        ``_ci_high``), ``answer_accuracy_*``, ``reward_model_*`` with a reward model, ``kl_to_sft`` (nats per
        answer), ``eos_rate_policy``, ``response_tokens_*``, ``eval_prompts``, ``eval_time_s``.
    """
    n = min(args.eval_prompts, len(test))
    if n == 0:
        return [], {}
    prompts = test.select(range(n))["prompt"]
    start = time.perf_counter()
    new = _responses(policy, tokenizer, prompts, args, max_new_tokens, seed)
    old = _responses(
        reference or policy, tokenizer, prompts, args, max_new_tokens, seed, reference is not None
    )
    new_text, old_text = decode_responses(tokenizer, new), decode_responses(tokenizer, old)
    samples = [
        {"prompt": prompt_text(p), "sft": a, name: b}
        for p, a, b in zip(prompts, old_text, new_text, strict=True)
    ]
    metrics = {
        "eval_prompts": n,
        "eos_rate_policy": mean([float(tokenizer.eos_token_id in r) for r in new]),
        "response_tokens_policy": mean([len(r) for r in new]),
        "response_tokens_sft": mean([len(r) for r in old]),
    }
    paired = dict(args=args, seed=seed, samples=samples, name=name)
    if reward_model is not None:
        scores = [reward_of_responses(reward_model, tokenizer, prompts, r) for r in (new, old)]
        metrics.update(_paired("reward_model_score", "reward_model_gain", "reward_model", *scores, **paired))
    if args.dataset_name == "builtin":
        judge = builtin_judge(args.task_seed, args.task_kwargs())
        gold_new, gold_old = gold_scores(judge, prompts, new_text), gold_scores(judge, prompts, old_text)
        groups = [judge.parse_question(p) for p in prompts]  # prompts about one fact move together
        metrics.update(
            _paired(
                "gold_reward",
                "gold_reward_gain",
                "gold",
                gold_new["score"],
                gold_old["score"],
                groups,
                **paired,
            ),
            answer_accuracy_sft=mean(gold_old["correct"]),
            answer_accuracy_policy=mean(gold_new["correct"]),
        )
    kl = kl_to_reference(
        policy, tokenizer, prompts, reference, max_new_tokens=max_new_tokens,
        batch_size=args.eval_generation_batch_size, seed=seed, samples_per_prompt=args.kl_samples_per_prompt,
    )  # fmt: skip
    metrics.update(kl_to_sft=kl["kl"], eval_time_s=time.perf_counter() - start)
    gain = "gold_reward_gain" if "gold_reward_gain" in metrics else "reward_model_gain"
    if gain in metrics:
        print(
            f"{name} vs SFT policy: {gain} {metrics[gain]:+.3f} (95% CI {metrics[gain + '_ci_low']:+.3f} .. "
            f"{metrics[gain + '_ci_high']:+.3f}); KL to SFT {metrics['kl_to_sft']:.3f} nats; "
            f"{n} held-out prompts"
        )
    return samples, metrics


def _paired(score, gain, column, new, old, groups=None, *, args, seed, samples, name) -> dict:
    """Mean scores of both policies and the paired gain with its bootstrap interval; each sample gets its two
    scores (``{column}_sft``, ``{column}_{name}``)."""
    for sample, a, b in zip(samples, old, new, strict=True):
        sample.update({f"{column}_sft": a, f"{column}_{name}": b})
    mean_gain, low, high = bootstrap_ci(
        new, old, groups=groups, n_resamples=args.bootstrap_resamples, seed=seed
    )
    return {
        f"{score}_sft": mean(old),
        f"{score}_policy": mean(new),
        gain: mean_gain,
        f"{gain}_ci_low": low,
        f"{gain}_ci_high": high,
    }


def write_comparison(
    output_dir, samples: list[dict], args: PolicyEvalArguments, name: str, rows: int, label: str
) -> str:
    """Write ``samples.jsonl``; returns the model card's section with the first ``rows`` answers side by side
    (``label``: what the trained policy is called in its heading)."""
    if not samples:
        return ""
    write_jsonl(output_dir / "samples.jsonl", samples)
    columns = ["prompt", "sft", name] + [
        c for c in ("gold_sft", f"gold_{name}", "reward_model_sft", f"reward_model_{name}") if c in samples[0]
    ]
    decoding = (
        f"sampled at temperature {args.eval_temperature} (same seed for both)"
        if args.eval_do_sample
        else "greedy"
    )
    return (
        f"\n\n## Answers before (SFT) and after ({label}), held-out prompts, {decoding}\n\n"
        + markdown_table(samples[:rows], columns)
    )
