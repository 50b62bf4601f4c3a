"""Benchmark: the repo's pretraining loop vs a minimal plain-PyTorch loop, same model, data and batch.

    python bench/pretrain.py [--config configs/quickstart/pretrain.yaml] [--steps 20] [--repeats 3]

Both loops run in this process on identical copies of the model built by ``rlhf.pretrain.build_model``
from the recipe. The repo side is ``rlhf.pretrain.train_loop`` itself -- the function ``rlhf pretrain``
runs -- with evaluation and checkpointing off (they are excluded from the stage's own tokens/s too);
the plain side is forward, backward, AdamW step, zero_grad. After warmup steps on each, timed blocks of
``--steps`` optimizer steps alternate A, B, A, B, ... and the medians are compared, so a noisy
neighbour slows both sides alike.

MFU = achieved model FLOP/s / peak, with model FLOPs = 6 x parameters x tokens (forward 2N + backward
4N per token; attention-score FLOPs not counted) and the peak a square matmul timed here in the
training dtype. The last line of output is a JSON object of the figures (``ratio`` = repo / plain).
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from accelerate import Accelerator  # noqa: E402

from rlhf.config import parse_args  # noqa: E402
from rlhf.corpus import load_text_corpus  # noqa: E402
from rlhf.pretrain import (  # noqa: E402
    PretrainArguments,
    TrainState,
    bf16_supported,
    build_model,
    build_optimizer,
    pack_blocks,
    train_loop,
)
from rlhf.tokenizer import train_tokenizer  # noqa: E402


def matmul_peak_flops(dtype: torch.dtype, n: int = 2048, repeats: int = 20) -> float:
    """Best FLOP/s of an ``n x n`` by ``n x n`` matmul in ``dtype`` (2 n^3 FLOPs), on the current threads."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    for _ in range(2):
        a @ b
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


def plain_steps(model, optimizer, blocks, batch_size, accum, steps, start_batch, autocast) -> int:
    """A minimal loop: ``steps`` optimizer steps over consecutive micro-batches; returns the next batch index."""
    n_batches = len(blocks) // batch_size
    for _ in range(steps):
        for _ in range(accum):
            i = start_batch % n_batches
            input_ids = blocks[i * batch_size : (i + 1) * batch_size]
            start_batch += 1
            with autocast():
                loss = model(input_ids=input_ids, labels=input_ids).loss / accum
            loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return start_batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "configs/quickstart/pretrain.yaml"))
    parser.add_argument("--steps", type=int, default=20, help="optimizer steps per timed block")
    parser.add_argument(
        "--warmup", type=int, default=3, help="untimed optimizer steps per loop before timing"
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed blocks per loop (alternating)")
    bench_args, overrides = parser.parse_known_args()
    (args,) = parse_args(
        [PretrainArguments], ["--config", bench_args.config, *overrides], prog="bench/pretrain.py"
    )
    args.eval_steps, args.save_steps = 0, 0
    total_steps = bench_args.warmup + bench_args.steps * bench_args.repeats
    args.max_steps = max(args.max_steps, total_steps + 1)  # the schedule must cover every timed step

    # same data and tokenizer as the stage
    corpus = load_text_corpus(
        args.dataset_name, args.text_column, args.dataset_config, args.seed,
        args.validation_split_percentage, args.task_kwargs(),
    )  # fmt: skip
    texts = list(corpus["train"][args.text_column])
    tokenizer = train_tokenizer(texts, args.tokenizer_vocab_size, model_max_length=args.block_size)
    blocks = pack_blocks(texts, tokenizer, args.block_size)

    args.bf16 = args.bf16 and bf16_supported()  # as the stage decides
    accelerator = Accelerator(mixed_precision="bf16" if args.bf16 else "no")
    model_repo = build_model(args, tokenizer)
    model_plain = copy.deepcopy(model_repo)
    n_params = sum(p.numel() for p in model_repo.parameters())
    optimizer, scheduler = build_optimizer(args, model_repo)
    model_repo, optimizer = accelerator.prepare(model_repo, optimizer)
    state = TrainState(global_batch=args.per_device_train_batch_size * accelerator.num_processes)
    plain_optimizer = torch.optim.AdamW(
        model_plain.parameters(), lr=args.learning_rate, betas=(args.adam_beta1, args.adam_beta2),
        weight_decay=args.weight_decay,
    )  # fmt: skip
    model_plain.train()
    dtype = torch.bfloat16 if args.bf16 else torch.float32

    def autocast():
        return torch.autocast("cpu", dtype=torch.bfloat16) if args.bf16 else nullcontext()

    tokens_per_step = args.per_device_train_batch_size * args.gradient_accumulation_steps * args.block_size
    batch, accum = args.per_device_train_batch_size, args.gradient_accumulation_steps

    def run_repo(steps: int) -> float:
        start = time.perf_counter()
        train_loop(
            accelerator, model_repo, optimizer, scheduler, blocks, args, state, max_steps=state.step + steps
        )
        return time.perf_counter() - start

    plain_position = 0

    def run_plain(steps: int) -> float:
        nonlocal plain_position
        start = time.perf_counter()
        plain_position = plain_steps(
            model_plain, plain_optimizer, blocks, batch, accum, steps, plain_position, autocast
        )
        return time.perf_counter() - start

    print(
        f"model: {n_params / 1e6:.2f}M parameters; batch {batch} x {accum} accumulation x {args.block_size} "
        f"tokens = {tokens_per_step} tokens/step; dtype {'bf16 autocast' if args.bf16 else 'fp32'}; "
        f"{torch.get_num_threads()} threads"
    )
    peak_before = matmul_peak_flops(dtype)  # measured before and after the loops; the higher one counts
    run_repo(bench_args.warmup)
    run_plain(bench_args.warmup)
    repo_rates, plain_rates = [], []
    for r in range(bench_args.repeats):
        repo_rates.append(tokens_per_step * bench_args.steps / run_repo(bench_args.steps))
        plain_rates.append(tokens_per_step * bench_args.steps / run_plain(bench_args.steps))
        print(f"round {r + 1}: repo {repo_rates[-1]:,.0f} tokens/s, plain {plain_rates[-1]:,.0f} tokens/s")

    peak = max(peak_before, matmul_peak_flops(dtype))
    repo, plain = statistics.median(repo_rates), statistics.median(plain_rates)
    mfu_repo, mfu_plain = 6 * n_params * repo / peak, 6 * n_params * plain / peak
    print(f"repo loop (rlhf.pretrain.train_loop): {repo:,.0f} tokens/s (median of {bench_args.repeats})")
    print(f"plain PyTorch loop:                   {plain:,.0f} tokens/s")
    print(f"ratio repo / plain: {repo / plain:.3f}")
    print(
        f"matmul peak ({str(dtype).split('.')[-1]}, 2048^3): {peak / 1e9:.1f} GFLOP/s; "
        f"MFU (6 x {n_params / 1e6:.2f}M params x tokens/s / peak): repo {mfu_repo:.1%}, plain {mfu_plain:.1%}"
    )
    print(
        json.dumps(
            {
                "bench": "pretrain",
                "ratio": round(repo / plain, 4),
                "repo_tokens_per_s": round(repo, 1),
                "plain_tokens_per_s": round(plain, 1),
                "repo_tokens_per_s_rounds": [round(x, 1) for x in repo_rates],
                "plain_tokens_per_s_rounds": [round(x, 1) for x in plain_rates],
                "mfu_repo": round(mfu_repo, 5),
                "mfu_plain": round(mfu_plain, 5),
                "peak_flops": round(peak),
                "peak_dtype": str(dtype).split(".")[-1],
                "flops_per_token": "6 * num_parameters",
                "num_parameters": n_params,
                "tokens_per_step": tokens_per_step,
                "steps_per_round": bench_args.steps,
                "threads": torch.get_num_threads(),
                "config": bench_args.config,
            }
        )
    )


if __name__ == "__main__":
    main()
