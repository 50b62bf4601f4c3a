"""The pretraining stage's settings (`rlhf pretrain --help` lists them): ``PretrainArguments``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


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
