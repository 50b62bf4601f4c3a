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

This module holds the settings, the loop and the stage; the pieces the loop calls live in modules named
for them: the corpus and its blocks (:mod:`rlhf.corpus`), the tokenizer, model and optimizer
(:mod:`rlhf.pretrain_model`), held-out loss and fact accuracy (:mod:`rlhf.pretrain_eval`), checkpoints and
the state a resume needs (:mod:`rlhf.pretrain_checkpoints`).
"""

from __future__ import annotations

import math
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from tqdm.auto import tqdm

from rlhf.config import ConfigError, config_to_dict, run_cli
from rlhf.corpus import BlockOrder, load_text_corpus, pack_blocks
from rlhf.precision import bf16_supported
from rlhf.pretrain_checkpoints import (
    STATE_FILE,
    TrainState,
    guard_unfinished_checkpoints,
    resolve_checkpoint,
    save_checkpoint,
)
from rlhf.pretrain_eval import evaluate_loss, fact_accuracy, load_facts
from rlhf.pretrain_model import build_model, build_optimizer, load_or_train_tokenizer


@dataclass
class PretrainArguments:
    """
    Arguments of the pretraining stage. Sizes are in tokens unless stated otherwise.

    Args:
        dataset_name (`str`, *optional*, defaults to `"builtin"`):
            Corpus: `"builtin"` (the built-in task's prose about its world), a local JSON/JSONL/TXT/
            Parquet/CSV file or a folder of `<split>.<ext>` files, or a Hub dataset id.
        dataset_config (`str` or `None`, *optional*, defaults to `None`):
            Configuration name of a Hub dataset.
        text_column (`str`, *optional*, defaults to `"text"`):
            Column holding the documents.
        validation_split_percentage (`float`, *optional*, defaults to `5.0`):
            Share of the documents held out for evaluation when the corpus has no validation split.
        task_seed (`int`, *optional*, defaults to `0`):
            Built-in task only: seed of the generated world (keep it equal across stages).
        task_num_people (`int` or `None`, *optional*, defaults to `None`):
            Built-in task only: number of people in the generated world (`None`: the task's default).
        block_size (`int`, *optional*, defaults to `128`):
            Tokens per training sequence; documents are packed back to back into blocks of this length.
        max_eval_blocks (`int` or `None`, *optional*, defaults to `None`):
            Evaluate on at most this many held-out blocks (`None`: all).
        tokenizer_name_or_path (`str` or `None`, *optional*, defaults to `None`):
            Tokenizer to use. `None`: the one of `model_name_or_path`, or, training from scratch, a
            byte-level BPE tokenizer trained here on the training corpus and saved with the model.
        tokenizer_vocab_size (`int`, *optional*, defaults to `2048`):
            Vocabulary size of a tokenizer trained here.
        model_name_or_path (`str` or `None`, *optional*, defaults to `None`):
            Continue pretraining this causal LM (Hub id or local directory) instead of building one.
        model_type (`str`, *optional*, defaults to `"llama"`):
            Architecture of a model built from scratch (any `transformers` model type with Llama-style
            config names, e.g. `llama`, `mistral`, `qwen2`).
        hidden_size (`int`, *optional*, defaults to `256`):
            Width of the residual stream.
        num_hidden_layers (`int`, *optional*, defaults to `4`):
            Number of transformer blocks.
        num_attention_heads (`int`, *optional*, defaults to `4`):
            Attention heads per layer; `hidden_size` must be divisible by it.
        num_key_value_heads (`int` or `None`, *optional*, defaults to `None`):
            Key/value heads (grouped-query attention); `None`: as many as attention heads.
        intermediate_size (`int`, *optional*, defaults to `688`):
            Width of the MLP (SwiGLU); about 8/3 x hidden_size.
        max_position_embeddings (`int` or `None`, *optional*, defaults to `None`):
            Longest sequence the model takes; `None`: `block_size`.
        tie_word_embeddings (`bool`, *optional*, defaults to `True`):
            Share the input embedding and output projection (saves vocab x hidden parameters).
        per_device_train_batch_size (`int`, *optional*, defaults to `16`):
            Blocks per micro-batch per process.
        gradient_accumulation_steps (`int`, *optional*, defaults to `1`):
            Micro-batches per optimizer step. Tokens per step = this x batch x processes x block_size.
        max_steps (`int`, *optional*, defaults to `1000`):
            Optimizer steps to train for; the corpus is repeated (reshuffled each epoch) as needed.
        learning_rate (`float`, *optional*, defaults to `1e-3`):
            Peak learning rate, reached after warmup.
        min_lr_ratio (`float`, *optional*, defaults to `0.1`):
            Final learning rate as a fraction of the peak (cosine decay ends there at `max_steps`).
        warmup_steps (`int`, *optional*, defaults to `50`):
            Optimizer steps of linear warmup from ~0 to the peak learning rate.
        weight_decay (`float`, *optional*, defaults to `0.1`):
            AdamW weight decay, applied to matrices and embeddings only (not norms or biases).
        adam_beta1 (`float`, *optional*, defaults to `0.9`):
            AdamW beta1.
        adam_beta2 (`float`, *optional*, defaults to `0.95`):
            AdamW beta2.
        adam_epsilon (`float`, *optional*, defaults to `1e-8`):
            AdamW epsilon.
        max_grad_norm (`float`, *optional*, defaults to `1.0`):
            Clip the global gradient norm to this (0 disables).
        bf16 (`bool`, *optional*, defaults to `False`):
            bf16 autocast (weights and optimizer stay fp32) where the hardware supports it. `False`
            leaves the choice to `accelerate launch --mixed_precision`.
        seed (`int`, *optional*, defaults to `0`):
            Seeds the model init, the data order and the built-in world.
        eval_steps (`int`, *optional*, defaults to `100`):
            Held-out loss every this many optimizer steps (0: only at the end).
        per_device_eval_batch_size (`int`, *optional*, defaults to `32`):
            Blocks per evaluation forward pass per process.
        eval_facts (`bool`, *optional*, defaults to `True`):
            Built-in task only: measure fact-completion accuracy of the untrained and the trained model.
        fact_split (`str`, *optional*, defaults to `"test"`):
            Built-in task: which held-out fact phrasings to complete: `validation` (to choose settings),
            `test` (the report) or `blind` (a re-check).
        fact_max_new_tokens (`int`, *optional*, defaults to `8`):
            Tokens greedily generated to complete each fact prompt.
        fact_batch_size (`int`, *optional*, defaults to `64`):
            Prompts per batched generation call.
        logging_steps (`int`, *optional*, defaults to `10`):
            Log the training loss every this many optimizer steps (each log costs a device sync).
        report_to (`str`, *optional*, defaults to `"tensorboard"`):
            `"tensorboard"` (used when installed; logs under `output_dir/tensorboard`) or `"none"`.
        disable_tqdm (`bool`, *optional*, defaults to `False`):
            Hide the progress bar.
        save_steps (`int`, *optional*, defaults to `0`):
            Checkpoint (model, optimizer, scheduler, RNG, data position) every this many optimizer
            steps into `output_dir/checkpoint-<step>` (0: never).
        save_total_limit (`int` or `None`, *optional*, defaults to `2`):
            Keep only the newest this many checkpoints (`None`: all).
        resume_from_checkpoint (`str` or `None`, *optional*, defaults to `None`):
            `"latest"` (the newest complete checkpoint in `output_dir`; starts fresh if there is none)
            or a checkpoint directory.
        output_dir (`str`, *optional*, defaults to `"runs/quickstart/pretrain"`):
            Where the model, tokenizer, checkpoints, metrics and plots are written.
        overwrite_output_dir (`bool`, *optional*, defaults to `False`):
            Replace a finished run, or the checkpoints of an unfinished one, in `output_dir`.
    """

    # data
    dataset_name: str = field(
        default="builtin", metadata={"help": "'builtin', a local file/folder, or a Hub id."}
    )
    dataset_config: str | None = field(
        default=None, metadata={"help": "Configuration name of a Hub dataset."}
    )
    text_column: str = field(default="text", metadata={"help": "Column holding the documents."})
    validation_split_percentage: float = field(
        default=5.0,
        metadata={"help": "Percent of documents held out when the corpus has no validation split."},
    )
    task_seed: int = field(default=0, metadata={"help": "Built-in task: seed of the generated world."})
    task_num_people: int | None = field(
        default=None, metadata={"help": "Built-in task: people in the generated world (None: task default)."}
    )
    block_size: int = field(default=128, metadata={"help": "Tokens per training sequence (packed)."})
    max_eval_blocks: int | None = field(
        default=None, metadata={"help": "Evaluate on at most this many blocks."}
    )
    # tokenizer
    tokenizer_name_or_path: str | None = field(
        default=None,
        metadata={"help": "Tokenizer; None: the model's, or train a BPE tokenizer on the corpus."},
    )
    tokenizer_vocab_size: int = field(
        default=2048, metadata={"help": "Vocabulary size of a tokenizer trained here."}
    )
    # model
    model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "Continue pretraining this model instead of building one from config."},
    )
    model_type: str = field(default="llama", metadata={"help": "Architecture of a model built from scratch."})
    hidden_size: int = field(default=256, metadata={"help": "Width of the residual stream."})
    num_hidden_layers: int = field(default=4, metadata={"help": "Number of transformer blocks."})
    num_attention_heads: int = field(default=4, metadata={"help": "Attention heads per layer."})
    num_key_value_heads: int | None = field(default=None, metadata={"help": "Key/value heads (None: all)."})
    intermediate_size: int = field(default=688, metadata={"help": "MLP width (~8/3 x hidden_size)."})
    max_position_embeddings: int | None = field(
        default=None, metadata={"help": "Max sequence (None: block_size)."}
    )
    tie_word_embeddings: bool = field(default=True, metadata={"help": "Share input and output embeddings."})
    # optimisation
    per_device_train_batch_size: int = field(
        default=16, metadata={"help": "Blocks per micro-batch per process."}
    )
    gradient_accumulation_steps: int = field(
        default=1, metadata={"help": "Micro-batches per optimizer step."}
    )
    max_steps: int = field(default=1000, metadata={"help": "Optimizer steps to train for."})
    learning_rate: float = field(default=1e-3, metadata={"help": "Peak learning rate."})
    min_lr_ratio: float = field(default=0.1, metadata={"help": "Final learning rate / peak."})
    warmup_steps: int = field(default=50, metadata={"help": "Linear warmup steps."})
    weight_decay: float = field(default=0.1, metadata={"help": "AdamW weight decay (matrices only)."})
    adam_beta1: float = field(default=0.9, metadata={"help": "AdamW beta1."})
    adam_beta2: float = field(default=0.95, metadata={"help": "AdamW beta2."})
    adam_epsilon: float = field(default=1e-8, metadata={"help": "AdamW epsilon."})
    max_grad_norm: float = field(default=1.0, metadata={"help": "Gradient clipping norm (0: off)."})
    bf16: bool = field(default=False, metadata={"help": "bf16 autocast where supported."})
    seed: int = field(
        default=0, metadata={"help": "Seed of the init, the data order and the built-in world."}
    )
    # evaluation, logging, checkpoints
    eval_steps: int = field(
        default=100, metadata={"help": "Held-out loss every N steps (0: at the end only)."}
    )
    per_device_eval_batch_size: int = field(
        default=32, metadata={"help": "Blocks per eval forward per process."}
    )
    eval_facts: bool = field(
        default=True, metadata={"help": "Built-in task: measure fact-completion accuracy."}
    )
    fact_split: str = field(
        default="test",
        metadata={"help": "Built-in task: held-out fact phrasings: validation, test or blind."},
    )
    fact_max_new_tokens: int = field(default=8, metadata={"help": "Tokens generated per fact prompt."})
    fact_batch_size: int = field(default=64, metadata={"help": "Prompts per generation batch."})
    logging_steps: int = field(default=10, metadata={"help": "Log the training loss every N steps."})
    report_to: str = field(default="tensorboard", metadata={"help": "'tensorboard' or 'none'."})
    disable_tqdm: bool = field(default=False, metadata={"help": "Hide the progress bar."})
    save_steps: int = field(default=0, metadata={"help": "Checkpoint every N steps (0: never)."})
    save_total_limit: int | None = field(default=2, metadata={"help": "Keep the newest N checkpoints."})
    resume_from_checkpoint: str | None = field(
        default=None, metadata={"help": "'latest' or a checkpoint directory to continue from."}
    )
    output_dir: str = field(default="runs/quickstart/pretrain", metadata={"help": "Output directory."})
    overwrite_output_dir: bool = field(
        default=False, metadata={"help": "Replace a finished or unfinished run."}
    )

    def __post_init__(self):
        if self.report_to not in ("tensorboard", "none"):
            raise ValueError(f"report_to must be 'tensorboard' or 'none', got '{self.report_to}'")
        for name in ("block_size", "per_device_train_batch_size", "gradient_accumulation_steps", "max_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.warmup_steps >= self.max_steps:
            raise ValueError(
                f"warmup_steps ({self.warmup_steps}) must be smaller than max_steps ({self.max_steps})"
            )

    def task_kwargs(self) -> dict[str, Any]:
        """The built-in task's size knobs that are set (passed to ``rlhf.task.load_builtin``)."""
        return {"num_people": self.task_num_people} if self.task_num_people is not None else {}


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
