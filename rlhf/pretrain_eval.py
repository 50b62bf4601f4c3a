"""How pretraining is measured: held-out loss over packed blocks, and on the built-in task the share of
held-out fact prompts the model completes correctly. Both split their work across processes."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from accelerate import Accelerator

from rlhf.config import ConfigError

if TYPE_CHECKING:
    from rlhf.pretrain_args import PretrainArguments


@torch.no_grad()
def evaluate_loss(accelerator: Accelerator, model, blocks: torch.Tensor, batch_size: int) -> float:
    """Mean next-token loss (nats/token) over all ``blocks``, split across processes."""
    raw_model = accelerator.unwrap_model(model)
    was_training = raw_model.training
    raw_model.eval()
    totals = torch.zeros(2, dtype=torch.float64, device=accelerator.device)  # (sum of losses, tokens)
    shard = blocks[accelerator.process_index :: accelerator.num_processes]
    for start in range(0, len(shard), batch_size):
        input_ids = shard[start : start + batch_size].to(accelerator.device)
        with accelerator.autocast():
            loss = raw_model(input_ids=input_ids, labels=input_ids).loss  # mean over n x (block_size - 1)
        n_targets = input_ids.shape[0] * (input_ids.shape[1] - 1)
        totals[0] += loss.double() * n_targets
        totals[1] += n_targets
    totals = accelerator.reduce(totals, reduction="sum")
    raw_model.train(was_training)
    return (totals[0] / totals[1]).item()


@torch.no_grad()
def complete(model, tokenizer, prompts: list[str], max_new_tokens: int, batch_size: int = 64) -> list[str]:
    """Greedy completions of ``prompts`` (batched, left-padded), decoded without special tokens."""
    padding_side, tokenizer.padding_side = tokenizer.padding_side, "left"
    was_training = model.training
    model.eval()
    completions = []
    try:
        for start in range(0, len(prompts), batch_size):
            batch = tokenizer(prompts[start : start + batch_size], return_tensors="pt", padding=True).to(
                model.device
            )
            output = model.generate(
                **batch,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id,
            )
            new_tokens = output[:, batch["input_ids"].shape[1] :]
            completions += tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
    finally:
        tokenizer.padding_side = padding_side
        model.train(was_training)
    return completions


def fact_accuracy(accelerator: Accelerator, model, tokenizer, facts, args: PretrainArguments) -> float:
    """Share of the built-in task's held-out fact prompts the model completes correctly (greedy).

    ``facts`` has ``prompt`` and ``answer`` columns; prompts are split across processes.
    """
    from rlhf.task import fact_completion_correct

    rows = list(range(accelerator.process_index, len(facts), accelerator.num_processes))
    prompts = [facts[i]["prompt"] for i in rows]
    completions = complete(accelerator.unwrap_model(model), tokenizer, prompts, args.fact_max_new_tokens)
    correct = sum(
        bool(fact_completion_correct(facts[i]["prompt"], completion, facts[i]["answer"]))
        for i, completion in zip(rows, completions, strict=True)
    )
    totals = accelerator.reduce(
        torch.tensor([correct, len(rows)], device=accelerator.device), reduction="sum"
    )
    return totals[0].item() / max(totals[1].item(), 1)


def load_facts(args: PretrainArguments):
    """The built-in task's held-out fact prompts of ``args.fact_split`` (None for other corpora)."""
    if args.dataset_name != "builtin":
        return None
    from rlhf.task import load_builtin

    facts = load_builtin("facts", seed=args.task_seed, **args.task_kwargs())
    if args.fact_split not in facts:
        raise ConfigError(f"fact_split: expected one of {', '.join(facts)}, got '{args.fact_split}'")
    return facts[args.fact_split]
