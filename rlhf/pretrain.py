"""Pretraining stage: next-token prediction with a plain Accelerate loop.

    rlhf pretrain --config configs/quickstart/pretrain.yaml
    accelerate launch --config_file launch/cpu_ddp.yaml -m rlhf.pretrain --config configs/quickstart/pretrain.yaml

One loop you can read top to bottom (after nanoGPT's train.py), with ``Accelerator`` doing the
device placement, DDP/FSDP/DeepSpeed wrapping, mixed precision and checkpoint I/O:

1. load a text corpus, tokenize it (an end-of-sequence token after every document) and pack the
   token stream into fixed-length blocks;
2. build a causal LM from a config (Llama-style by default) or load one to continue;
3. AdamW with linear warmup then cosine decay, gradient accumulation, gradient clipping;
4. held-out loss every ``eval_steps``, ``accelerator.save_state`` every ``save_steps``;
5. at the end: the model (safetensors) and tokenizer, ``metrics.json``, loss curves, a model card.

The data order is a pure function of (seed, epoch): block ``i`` of micro-batch ``m`` is the same on
every run, so a resumed run sees exactly the batches an uninterrupted one would have seen.

This module holds the loop and the stage. Its settings are in :mod:`rlhf.pretrain_args`; the pieces the loop
calls live in modules named for them: the corpus and its blocks (:mod:`rlhf.corpus`), the tokenizer, model
and optimizer (:mod:`rlhf.pretrain_model`), held-out loss and fact accuracy (:mod:`rlhf.pretrain_eval`),
checkpoints and the state a resume needs (:mod:`rlhf.pretrain_checkpoints`).
"""

from __future__ import annotations

import math
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from tqdm.auto import tqdm

from rlhf.config import ConfigError, config_to_dict, run_cli
from rlhf.corpus import BlockOrder, load_text_corpus, pack_blocks
from rlhf.precision import bf16_supported
from rlhf.pretrain_args import PretrainArguments
from rlhf.pretrain_checkpoints import (
    STATE_FILE,
    TrainState,
    guard_unfinished_checkpoints,
    resolve_checkpoint,
    save_checkpoint,
)
from rlhf.pretrain_eval import evaluate_loss, fact_accuracy, load_facts
from rlhf.pretrain_model import build_model, build_optimizer, load_or_train_tokenizer

# ----------------------------------------------------------------------------------------------
# the loop


def train_loop(
    accelerator: Accelerator,
    model,
    optimizer,
    scheduler,
    train_blocks: torch.Tensor,
    args: PretrainArguments,
    state: TrainState,
    eval_blocks: torch.Tensor | None = None,
    output_dir: Path | None = None,
    max_steps: int | None = None,
) -> TrainState:
    """Run optimizer steps ``state.step + 1 .. max_steps`` (default ``args.max_steps``), updating ``state``.

    Evaluates every ``args.eval_steps`` (when ``eval_blocks`` is given) and checkpoints every
    ``args.save_steps`` (when ``output_dir`` is given). The training loss is read back to the host
    only every ``args.logging_steps`` steps, so the loop never waits on the device in between.
    """
    max_steps = args.max_steps if max_steps is None else max_steps
    accum = args.gradient_accumulation_steps
    order = BlockOrder(
        len(train_blocks), args.per_device_train_batch_size, accelerator.num_processes,
        accelerator.process_index, args.seed,
    )  # fmt: skip
    tokens_per_step = accum * order.global_batch * args.block_size
    progress = tqdm(
        total=max_steps, initial=state.step, desc="pretrain", unit="step", dynamic_ncols=True,
        disable=args.disable_tqdm or not accelerator.is_local_main_process,
    )  # fmt: skip
    running_loss = torch.zeros((), device=accelerator.device)  # summed on device, read at logging steps
    logged_steps = 0
    model.train()
    tick = time.perf_counter()
    while state.step < max_steps:
        # one optimizer step = `accum` micro-batches; gradients are all-reduced on the last one only
        for micro in range(accum):
            input_ids = train_blocks[order(state.micro_step)].to(accelerator.device, non_blocking=True)
            state.micro_step += 1
            with accelerator.no_sync(model) if micro < accum - 1 else nullcontext():
                loss = model(input_ids=input_ids, labels=input_ids).loss  # autocast applied by Accelerator
                accelerator.backward(loss / accum)
            running_loss += loss.detach()
        grad_norm = (
            accelerator.clip_grad_norm_(model.parameters(), args.max_grad_norm)
            if args.max_grad_norm
            else None
        )
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        state.step += 1
        state.tokens_seen += tokens_per_step
        logged_steps += 1
        progress.update(1)

        last = state.step == max_steps
        if state.step % args.logging_steps == 0 or last:
            train_loss = accelerator.reduce(running_loss, reduction="mean").item() / (logged_steps * accum)
            state.train_loss.append((state.step, train_loss))
            logs = {"train/loss": train_loss, "train/lr": scheduler.get_last_lr()[0]}
            if grad_norm is not None:
                logs["train/grad_norm"] = float(grad_norm)
            accelerator.log(logs, step=state.step)
            progress.set_postfix(loss=f"{train_loss:.3f}", refresh=False)
            running_loss.zero_()
            logged_steps = 0

        do_eval = eval_blocks is not None and args.eval_steps and state.step % args.eval_steps == 0
        do_save = output_dir is not None and args.save_steps and state.step % args.save_steps == 0
        if do_eval or do_save:
            state.train_time_s += time.perf_counter() - tick
            if do_eval:
                eval_loss = evaluate_loss(accelerator, model, eval_blocks, args.per_device_eval_batch_size)
                state.eval_loss.append((state.step, eval_loss))
                accelerator.log(
                    {"eval/loss": eval_loss, "eval/perplexity": math.exp(eval_loss)}, step=state.step
                )
                if accelerator.is_main_process:
                    progress.write(
                        f"step {state.step}: eval loss {eval_loss:.4f}, ppl {math.exp(eval_loss):.2f}"
                    )
            if do_save:
                save_checkpoint(accelerator, output_dir, state, args.save_total_limit)
            tick = time.perf_counter()
    state.train_time_s += time.perf_counter() - tick
    progress.close()
    return state


# ----------------------------------------------------------------------------------------------
# the stage


def main(args: PretrainArguments) -> dict:
    """Pretrain (or continue pretraining) a causal LM; returns the metrics written to ``metrics.json``."""
    from rlhf.reporting import plot_curves
    from rlhf.runs import stage_run

    wall_start = time.perf_counter()
    with stage_run("pretrain", args) as run:  # every process: all of them stop on a refused output_dir
        output_dir = run.output_dir
        use_tensorboard = args.report_to == "tensorboard" and _tensorboard_installed()
        use_bf16 = args.bf16 and bf16_supported()
        accelerator = Accelerator(
            mixed_precision="bf16" if use_bf16 else None,
            log_with="tensorboard" if use_tensorboard else None,
            project_dir=str(output_dir),
        )
        guard_unfinished_checkpoints(args, output_dir, delete=accelerator.is_main_process)
        accelerator.wait_for_everyone()
        if args.bf16 and not use_bf16:
            accelerator.print(
                "pretrain: bf16 requested but this hardware has no fast bf16 (emulated): training in fp32"
            )
        checkpoint = resolve_checkpoint(args.resume_from_checkpoint, output_dir)
        set_seed(args.seed)

        # data -> tokenizer -> packed blocks
        corpus = load_text_corpus(
            args.dataset_name, args.text_column, args.dataset_config, args.task_seed,
            args.validation_split_percentage, args.task_kwargs(),
        )  # fmt: skip
        train_texts = list(corpus["train"][args.text_column])
        tokenizer = load_or_train_tokenizer(args, train_texts, accelerator)
        train_blocks = pack_blocks(train_texts, tokenizer, args.block_size)
        eval_blocks = pack_blocks(list(corpus["validation"][args.text_column]), tokenizer, args.block_size)
        eval_blocks = eval_blocks[: args.max_eval_blocks]
        if len(eval_blocks) == 0:
            raise ConfigError(f"the validation split is shorter than one block of {args.block_size} tokens")
        run.write_config()

        # model, optimizer, schedule
        model = build_model(args, tokenizer)
        n_params = sum(p.numel() for p in model.parameters())
        optimizer, scheduler = build_optimizer(args, model)
        model, optimizer = accelerator.prepare(model, optimizer)
        # The schedule is in optimizer steps whatever the process count, so it is not `prepare`d
        # (accelerate would step it once per process); it is still saved and restored with the state.
        accelerator.register_for_checkpointing(scheduler)

        state = TrainState(global_batch=args.per_device_train_batch_size * accelerator.num_processes)
        facts = load_facts(args) if args.eval_facts else None
        if checkpoint is not None:
            accelerator.load_state(str(checkpoint))
            saved = TrainState.load(checkpoint / STATE_FILE)
            if saved.global_batch != state.global_batch:
                raise ConfigError(
                    f"{checkpoint} was trained with {saved.global_batch} blocks per micro-batch over all processes, "
                    f"this run has {state.global_batch}: resume with the same batch size and process count"
                )
            state = saved
            accelerator.print(f"resumed from {checkpoint} at step {state.step}")
        elif facts is not None:
            state.fact_accuracy_untrained = fact_accuracy(accelerator, model, tokenizer, facts, args)
        if use_tensorboard:
            accelerator.init_trackers("tensorboard", config=_scalars(config_to_dict(args)))

        accelerator.print(
            f"pretrain: {n_params / 1e6:.2f}M parameters, {len(train_blocks)} train / {len(eval_blocks)} eval "
            f"blocks of {args.block_size} tokens, {args.max_steps} steps of "
            f"{args.gradient_accumulation_steps * state.global_batch * args.block_size} tokens"
        )
        tokens_before, time_before = state.tokens_seen, state.train_time_s
        state = train_loop(
            accelerator, model, optimizer, scheduler, train_blocks, args, state, eval_blocks, output_dir
        )

        # final evaluation, the model, and the run directory's records
        eval_loss = evaluate_loss(accelerator, model, eval_blocks, args.per_device_eval_batch_size)
        if not state.eval_loss or state.eval_loss[-1][0] != state.step:
            state.eval_loss.append((state.step, eval_loss))
        trained_facts = (
            fact_accuracy(accelerator, model, tokenizer, facts, args) if facts is not None else None
        )

        unwrapped = accelerator.unwrap_model(model, keep_fp32_wrapper=False)
        unwrapped.generation_config.pad_token_id = tokenizer.pad_token_id
        unwrapped.generation_config.eos_token_id = tokenizer.eos_token_id
        unwrapped.save_pretrained(
            output_dir, is_main_process=accelerator.is_main_process, save_function=accelerator.save
        )
        session_time = state.train_time_s - time_before
        metrics = {
            "eval_loss": eval_loss,
            "eval_perplexity": math.exp(eval_loss),
            "fact_accuracy": trained_facts,
            "fact_accuracy_untrained": state.fact_accuracy_untrained,
            "train_loss": state.train_loss[-1][1] if state.train_loss else None,
            "steps": state.step,
            "tokens_seen": state.tokens_seen,
            "tokens_per_second": (state.tokens_seen - tokens_before) / max(session_time, 1e-9),
            "train_time_s": state.train_time_s,
            "wall_time_s": time.perf_counter() - wall_start,
            "num_parameters": n_params,
            "num_processes": accelerator.num_processes,
            "mixed_precision": accelerator.mixed_precision,
        }
        if accelerator.is_main_process:
            tokenizer.save_pretrained(output_dir)
            plot_curves(
                output_dir / "loss.png",
                {"train": state.train_loss, "eval": state.eval_loss},
                title="pretraining loss",
                ylabel="loss (nats/token)",
            )
            run.finish(
                metrics,
                description="A causal language model pretrained with the `rlhf` Accelerate loop "
                f"on `{args.dataset_name}` ({state.tokens_seen:,} tokens).",
            )
            print(
                f"pretrain: eval loss {eval_loss:.4f} (perplexity {metrics['eval_perplexity']:.2f}), "
                f"{metrics['tokens_per_second']:.0f} tokens/s, {metrics['wall_time_s']:.0f} s"
            )
            if trained_facts is not None:
                print(
                    f"fact accuracy: {trained_facts:.3f} trained vs {state.fact_accuracy_untrained:.3f} untrained "
                    f"({len(facts)} held-out fact prompts)"
                )
        accelerator.wait_for_everyone()
        accelerator.end_training()  # closes the trackers and, under DDP, the process group: keep it last
    return metrics


def _tensorboard_installed() -> bool:
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        return False
    return True


def _scalars(config: dict[str, Any]) -> dict[str, Any]:
    """TensorBoard's hparams take only scalars and strings."""
    return {k: v for k, v in config.items() if isinstance(v, int | float | str | bool)}


def cli(argv=None):
    return run_cli(main, (PretrainArguments,), "rlhf pretrain", argv)


if __name__ == "__main__":
    cli()
