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
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from tqdm.auto import tqdm
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from rlhf.config import ConfigError, config_to_dict, run_cli
from rlhf.precision import bf16_supported

STATE_FILE = "trainer_state.json"  # our part of a checkpoint: step, data position, loss history


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
# data: packed blocks in an order that depends only on (seed, epoch)


def pack_blocks(texts: list[str], tokenizer, block_size: int) -> torch.Tensor:
    """Tokenize ``texts``, join them with the eos token after each, and cut into ``[n, block_size]``.

    The tail that does not fill a whole block is dropped. Returns an int64 tensor.
    """
    if tokenizer.eos_token_id is None:
        raise ConfigError("the tokenizer has no eos_token: documents cannot be separated")
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
    stream = [token for doc in ids for token in (*doc, tokenizer.eos_token_id)]
    n_blocks = len(stream) // block_size
    return torch.tensor(stream[: n_blocks * block_size], dtype=torch.long).view(n_blocks, block_size)


class BlockOrder:
    """Micro-batch ``m`` of process ``rank``: a pure function of (seed, m), so a resumed run skips exactly.

    Each epoch is a fresh permutation of all blocks seeded by ``seed + epoch``; consecutive slices of
    ``batch_size * num_processes`` blocks form the global micro-batches (a partial last one is dropped),
    and process ``rank`` takes its own ``batch_size`` rows of each.
    """

    def __init__(self, n_blocks: int, batch_size: int, num_processes: int, rank: int, seed: int):
        self.global_batch = batch_size * num_processes
        self.batches_per_epoch = n_blocks // self.global_batch
        if self.batches_per_epoch == 0:
            raise ConfigError(
                f"the corpus packs into only {n_blocks} blocks, fewer than one global batch "
                f"({batch_size} x {num_processes} processes): lower per_device_train_batch_size or block_size"
            )
        self.n_blocks, self.batch_size, self.rank, self.seed = n_blocks, batch_size, rank, seed
        self._epoch, self._perm = -1, None

    def __call__(self, micro_step: int) -> torch.Tensor:
        """Indices (into the packed blocks) of this process's rows of global micro-batch ``micro_step``."""
        epoch, i = divmod(micro_step, self.batches_per_epoch)
        if epoch != self._epoch:
            generator = torch.Generator().manual_seed(self.seed + epoch)
            self._epoch, self._perm = epoch, torch.randperm(self.n_blocks, generator=generator)
        start = i * self.global_batch + self.rank * self.batch_size
        return self._perm[start : start + self.batch_size]


# ----------------------------------------------------------------------------------------------
# tokenizer and model


def load_or_train_tokenizer(args: PretrainArguments, train_texts: list[str], accelerator: Accelerator):
    """The tokenizer named in ``args``, the model's own, or one trained here and saved in output_dir."""
    if args.tokenizer_name_or_path or args.model_name_or_path:
        tokenizer = AutoTokenizer.from_pretrained(args.tokenizer_name_or_path or args.model_name_or_path)
        if tokenizer.pad_token is None:  # many base models ship without one; padding only matters at eval
            tokenizer.pad_token = tokenizer.eos_token
        return tokenizer
    from rlhf.tokenizer import train_tokenizer

    output_dir = Path(args.output_dir)
    saved = (output_dir / "tokenizer.json").is_file() and args.resume_from_checkpoint is not None
    if accelerator.is_main_process and not saved:  # train once, share through the output directory
        model_max_length = args.max_position_embeddings or args.block_size
        train_tokenizer(
            train_texts, args.tokenizer_vocab_size, model_max_length=model_max_length
        ).save_pretrained(output_dir)
    accelerator.wait_for_everyone()
    return AutoTokenizer.from_pretrained(output_dir)


def build_model(args: PretrainArguments, tokenizer) -> torch.nn.Module:
    """Load ``model_name_or_path`` or build a fresh causal LM of ``model_type`` sized by ``args`` (fp32)."""
    if args.model_name_or_path:
        model = AutoModelForCausalLM.from_pretrained(args.model_name_or_path, dtype=torch.float32)
        if len(tokenizer) > model.get_input_embeddings().weight.shape[0]:
            model.resize_token_embeddings(len(tokenizer))
        return model
    config = AutoConfig.for_model(
        args.model_type,
        vocab_size=len(tokenizer),
        hidden_size=args.hidden_size,
        num_hidden_layers=args.num_hidden_layers,
        num_attention_heads=args.num_attention_heads,
        num_key_value_heads=args.num_key_value_heads or args.num_attention_heads,
        intermediate_size=args.intermediate_size,
        max_position_embeddings=args.max_position_embeddings or args.block_size,
        tie_word_embeddings=args.tie_word_embeddings,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(args.seed)  # the init depends on the seed only
    return AutoModelForCausalLM.from_config(config)


def build_optimizer(args: PretrainArguments, model: torch.nn.Module):
    """AdamW (decay on >=2-D weights only) and a warmup + cosine schedule in optimizer steps."""
    decay, no_decay = [], []
    for param in model.parameters():
        if param.requires_grad:
            (decay if param.dim() >= 2 else no_decay).append(param)
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=args.learning_rate,
        betas=(args.adam_beta1, args.adam_beta2),
        eps=args.adam_epsilon,
    )

    def lr_factor(step: int) -> float:  # multiplier of learning_rate for optimizer step `step` (0-based)
        if step < args.warmup_steps:
            return (step + 1) / args.warmup_steps
        progress = min(1.0, (step - args.warmup_steps) / max(1, args.max_steps - args.warmup_steps))
        return args.min_lr_ratio + (1 - args.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)


# ----------------------------------------------------------------------------------------------
# evaluation


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


# ----------------------------------------------------------------------------------------------
# checkpoints


@dataclass
class TrainState:
    """What the loop needs besides model/optimizer/scheduler/RNG to continue exactly."""

    step: int = 0  # optimizer steps done
    micro_step: int = 0  # global micro-batches consumed: the data position
    tokens_seen: int = 0  # training tokens processed, all processes together
    train_time_s: float = 0.0  # seconds spent in training steps (evaluation and checkpointing excluded)
    global_batch: int = 0  # blocks per global micro-batch; a resume must use the same
    fact_accuracy_untrained: float | None = None
    train_loss: list = field(default_factory=list)  # [(step, loss)]
    eval_loss: list = field(default_factory=list)  # [(step, loss)]

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.__dict__, indent=1))

    @classmethod
    def load(cls, path: Path) -> TrainState:
        return cls(**json.loads(path.read_text()))


def _checkpoints(output_dir: Path) -> list[Path]:
    """Complete checkpoints in ``output_dir``, oldest first (a killed save leaves only a ``.tmp`` dir)."""
    found = [p for p in output_dir.glob("checkpoint-*") if p.is_dir() and p.name.split("-")[-1].isdigit()]
    return sorted(found, key=lambda p: int(p.name.split("-")[-1]))


def resolve_checkpoint(resume_from_checkpoint: str | None, output_dir: Path) -> Path | None:
    """The checkpoint directory to resume from: ``"latest"`` -> the newest in ``output_dir`` (or None)."""
    if resume_from_checkpoint is None:
        return None
    if resume_from_checkpoint == "latest":
        found = _checkpoints(output_dir)
        return found[-1] if found else None
    path = Path(resume_from_checkpoint)
    if not (path / STATE_FILE).is_file():
        raise ConfigError(f"resume_from_checkpoint '{path}' is not a complete checkpoint (no {STATE_FILE})")
    return path


def save_checkpoint(
    accelerator: Accelerator, output_dir: Path, state: TrainState, total_limit: int | None
) -> Path:
    """Write ``checkpoint-<step>`` atomically: saved under a ``.tmp`` name, renamed when complete."""
    final = output_dir / f"checkpoint-{state.step}"
    tmp = output_dir / f"checkpoint-{state.step}.tmp"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))  # model, optimizer, registered scheduler, every process's RNG
    if accelerator.is_main_process:
        state.save(tmp / STATE_FILE)
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        for old in _checkpoints(output_dir)[: -total_limit if total_limit else 0]:
            shutil.rmtree(old)
    accelerator.wait_for_everyone()
    return final


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
    from rlhf.corpus import load_text_corpus
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
        _guard_unfinished_checkpoints(args, output_dir, delete=accelerator.is_main_process)
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
        facts = _load_facts(args) if args.eval_facts else None
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


def _load_facts(args: PretrainArguments):
    """The built-in task's held-out fact prompts of ``args.fact_split`` (None for other corpora)."""
    if args.dataset_name != "builtin":
        return None
    from rlhf.task import load_builtin

    facts = load_builtin("facts", seed=args.task_seed, **args.task_kwargs())
    if args.fact_split not in facts:
        raise ConfigError(f"fact_split: expected one of {', '.join(facts)}, got '{args.fact_split}'")
    return facts[args.fact_split]


def _guard_unfinished_checkpoints(args: PretrainArguments, output_dir: Path, delete: bool) -> None:
    """Starting fresh over an unfinished run's checkpoints would mix two runs: refuse, or clear them."""
    old = _checkpoints(output_dir) + sorted(output_dir.glob("checkpoint-*.tmp"))
    if not old or args.resume_from_checkpoint is not None:
        return
    if not args.overwrite_output_dir:
        raise ConfigError(
            f"output_dir '{output_dir}' holds checkpoints of an unfinished run ({old[-1].name}); "
            "pass --resume_from_checkpoint latest to continue it, or --overwrite_output_dir true to start over"
        )
    for path in old if delete else []:
        shutil.rmtree(path)


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
