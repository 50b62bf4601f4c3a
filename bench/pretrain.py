"""Benchmark: the repo's pretraining loop vs a minimal plain-PyTorch loop, same model, data and batch.

    python bench/pretrain.py [--config configs/quickstart/pretrain.yaml] [--steps 20] [--min_rounds 6]

Both loops run in this process on identical copies of the model built by ``rlhf.pretrain_model.build_model``
from the recipe. The repo side is ``rlhf.pretrain.train_loop`` itself -- the function ``rlhf pretrain``
runs -- with evaluation and checkpointing off (they are excluded from the stage's own tokens/s too);
the plain side is forward, backward, AdamW step, zero_grad. Both run on the device accelerate picks (a GPU
when there is one), with autocast on that device's type when bf16 is used. After warmup steps on each, paired
rounds of ``--steps`` optimizer steps per side run back to back, the side going first alternating from round to
round; ``ratio`` is the median of the per-round ratios repo / plain, ``ratio_iqr`` their interquartile range
(``bench/_stats.py``), so a noisy neighbour slows both halves of a round alike.

MFU = achieved model FLOP/s / peak, with model FLOPs = 6 x parameters x tokens (forward 2N + backward
4N per token; attention-score FLOPs not counted) and the peak a square matmul timed here in the
training dtype on the same device. The last line of output is a JSON object of the figures.
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

from _stats import describe, paired_ratio, paired_rounds  # noqa: E402
from accelerate import Accelerator  # noqa: E402

from rlhf.config import parse_args  # noqa: E402
from rlhf.corpus import load_text_corpus, pack_blocks  # noqa: E402
from rlhf.precision import bf16_supported  # noqa: E402
from rlhf.pretrain import PretrainArguments, train_loop  # noqa: E402
from rlhf.pretrain_checkpoints import TrainState  # noqa: E402
from rlhf.pretrain_model import build_model, build_optimizer  # noqa: E402
from rlhf.tokenizer import train_tokenizer  # noqa: E402


def synchronize(device: torch.device) -> None:
    """Wait for queued kernels, so a wall-clock reading covers the work (a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak_flops(dtype: torch.dtype, device: torch.device, n: int = 2048, repeats: int = 20) -> float:
    """Best FLOP/s of an ``n x n`` by ``n x n`` matmul in ``dtype`` on ``device`` (2 n^3 FLOPs)."""
    a = torch.randn(n, n, dtype=dtype, device=device)
    b = torch.randn(n, n, dtype=dtype, device=device)
    for _ in range(2):
        a @ b
    synchronize(device)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


def plain_steps(model, optimizer, blocks, batch_size, accum, steps, start_batch, autocast, device) -> int:
    """A minimal loop: ``steps`` optimizer steps over consecutive micro-batches; returns the next batch index."""
    n_batches = len(blocks) // batch_size
    for _ in range(steps):
        for _ in range(accum):
            i = start_batch % n_batches
            input_ids = blocks[i * batch_size : (i + 1) * batch_size].to(device, non_blocking=True)
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
    parser.add_argument(
        "--min_rounds",
        type=int,
        default=6,
        help="paired rounds at least (an even count: each side first as often)",
    )
    parser.add_argument(
        "--max_rounds", type=int, default=15, help="paired rounds at most (stops once the ratio IQR < 0.05)"
    )
    bench_args, overrides = parser.parse_known_args()
    (args,) = parse_args(
        [PretrainArguments], ["--config", bench_args.config, *overrides], prog="bench/pretrain.py"
    )
    args.eval_steps, args.save_steps = 0, 0
    total_steps = bench_args.warmup + bench_args.steps * bench_args.max_rounds
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
    device = accelerator.device
    model_plain = copy.deepcopy(model_repo).to(device)
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
        return torch.autocast(device.type, dtype=torch.bfloat16) if args.bf16 else nullcontext()

    tokens_per_step = args.per_device_train_batch_size * args.gradient_accumulation_steps * args.block_size
    batch, accum = args.per_device_train_batch_size, args.gradient_accumulation_steps

    def run_repo(steps: int) -> float:
        synchronize(device)
        start = time.perf_counter()
        train_loop(
            accelerator, model_repo, optimizer, scheduler, blocks, args, state, max_steps=state.step + steps
        )
        synchronize(device)
        return time.perf_counter() - start

    plain_position = 0

    def run_plain(steps: int) -> float:
        nonlocal plain_position
        synchronize(device)
        start = time.perf_counter()
        plain_position = plain_steps(
            model_plain, plain_optimizer, blocks, batch, accum, steps, plain_position, autocast, device
        )
        synchronize(device)
        return time.perf_counter() - start

    print(
        f"model: {n_params / 1e6:.2f}M parameters; batch {batch} x {accum} accumulation x {args.block_size} "
        f"tokens = {tokens_per_step} tokens/step; dtype {'bf16 autocast' if args.bf16 else 'fp32'}; "
        f"{torch.get_num_threads()} threads; device {device} (both sides)"
    )
    # measured before and after the loops, on the training device; the higher one counts
    peak_before = matmul_peak_flops(dtype, device)
    run_repo(bench_args.warmup)
    run_plain(bench_args.warmup)

    def log(i: int, repo_rate: float, plain_rate: float) -> None:
        print(
            f"round {i + 1} ({'repo' if i % 2 == 0 else 'plain'} first): repo {repo_rate:,.0f} tokens/s, "
            f"plain {plain_rate:,.0f} tokens/s, ratio {repo_rate / plain_rate:.3f}",
            flush=True,
        )

    repo_rates, plain_rates = paired_rounds(
        lambda i: tokens_per_step * bench_args.steps / run_repo(bench_args.steps),
        lambda i: tokens_per_step * bench_args.steps / run_plain(bench_args.steps),
        float,
        bench_args.min_rounds,
        bench_args.max_rounds,
        log=log,
    )
    paired = paired_ratio(repo_rates, plain_rates)

    peak = max(peak_before, matmul_peak_flops(dtype, device))
    repo, plain = statistics.median(repo_rates), statistics.median(plain_rates)
    mfu_repo, mfu_plain = 6 * n_params * repo / peak, 6 * n_params * plain / peak
    print(f"repo loop (rlhf.pretrain.train_loop): {repo:,.0f} tokens/s (median of {len(repo_rates)} rounds)")
    print(f"plain PyTorch loop:                   {plain:,.0f} tokens/s")
    print(describe(paired))
    print(
        f"matmul peak ({str(dtype).split('.')[-1]}, 2048^3, {device}): {peak / 1e9:.1f} GFLOP/s; "
        f"MFU (6 x {n_params / 1e6:.2f}M params x tokens/s / peak): repo {mfu_repo:.1%}, plain {mfu_plain:.1%}"
    )
    print(
        json.dumps(
            {
                "bench": "pretrain",
                **paired,
                "repo_tokens_per_s": round(repo, 1),
                "plain_tokens_per_s": round(plain, 1),
                "repo_tokens_per_s_rounds": [round(x, 1) for x in repo_rates],
                "plain_tokens_per_s_rounds": [round(x, 1) for x in plain_rates],
                "mfu_repo": round(mfu_repo, 5),
                "mfu_plain": round(mfu_plain, 5),
                "peak_flops": round(peak),
                "peak_dtype": str(dtype).split(".")[-1],
                "device": str(device),
                "model_device_repo": str(next(model_repo.parameters()).device),
                "model_device_plain": str(next(model_plain.parameters()).device),
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
